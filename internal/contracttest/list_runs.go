package contracttest

import (
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// ListRuns tests ListFeatureRuns.
func ListRuns(t *testing.T, open dbtest.Opener) {
	// all pages through every run that matches filter, newest first.
	all := func(e *env, filter repository.RunFilter, limit int) []uuid.UUID {
		e.t.Helper()
		var ids []uuid.UUID
		page := repository.Page{Limit: limit}
		for {
			p, err := e.repo.ListFeatureRuns(e.ctx, filter, page)
			require.NoError(e.t, err)
			require.LessOrEqual(e.t, len(p.Runs), limit)
			for _, r := range p.Runs {
				ids = append(ids, r.ID)
			}
			if p.Next == "" {
				return ids
			}
			page.After = p.Next
		}
	}

	t.Run("NewestFirstAcrossPages", func(t *testing.T) {
		e := setup(t, open)
		var created []uuid.UUID
		for range 23 {
			created = append(created, e.newRun())
		}
		got := all(e, repository.RunFilter{}, 5)
		require.Len(t, got, 23)
		var runs []models.FeatureRun
		require.NoError(t, e.db.Order("created_at DESC, id DESC").Find(&runs).Error)
		for i, r := range runs {
			assert.Equal(t, r.ID, got[i], "position %d", i)
		}
		assert.ElementsMatch(t, created, got)
	})

	t.Run("Filters", func(t *testing.T) {
		e := setup(t, open)
		var running, completed []uuid.UUID
		for i := range 12 {
			id := e.newRun()
			if i%3 == 0 {
				require.NoError(t, e.repo.CompleteFeatureRun(e.ctx, id))
				completed = append(completed, id)
			} else {
				running = append(running, id)
			}
		}
		assert.ElementsMatch(t, completed, all(e, repository.RunFilter{Statuses: []models.RunStatus{models.RunCompleted}}, 3))
		assert.ElementsMatch(t, running, all(e, repository.RunFilter{Statuses: []models.RunStatus{models.RunRunning}}, 100))
		assert.Len(t, all(e, repository.RunFilter{Statuses: []models.RunStatus{models.RunRunning, models.RunCompleted}}, 2), 12)
		assert.Empty(t, all(e, repository.RunFilter{Statuses: []models.RunStatus{models.RunFailed}}, 2))

		var runs []models.FeatureRun
		require.NoError(t, e.db.Order("created_at, id").Find(&runs).Error)
		from, before := runs[3].CreatedAt, runs[9].CreatedAt
		var want []uuid.UUID
		for _, r := range runs {
			if !r.CreatedAt.Before(from) && r.CreatedAt.Before(before) {
				want = append(want, r.ID)
			}
		}
		assert.ElementsMatch(t, want, all(e, repository.RunFilter{CreatedFrom: from, CreatedBefore: before}, 4))
		assert.Empty(t, all(e, repository.RunFilter{CreatedFrom: time.Now().Add(time.Hour)}, 4))
	})

	t.Run("StableUnderConcurrentInserts", func(t *testing.T) {
		e := setup(t, open)
		existing := map[uuid.UUID]bool{}
		for range 60 {
			existing[e.newRun()] = true
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := e.repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{Phase: "plan"}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		got := all(e, repository.RunFilter{}, 7)
		close(stop)
		wg.Wait()
		seen := map[uuid.UUID]bool{}
		for _, id := range got {
			assert.False(t, seen[id], "run %s repeated", id)
			seen[id] = true
		}
		for id := range existing {
			assert.True(t, seen[id], "run %s skipped", id)
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		e := setup(t, open)
		for _, c := range []struct {
			filter repository.RunFilter
			page   repository.Page
		}{
			{page: repository.Page{Limit: -1}},
			{page: repository.Page{Limit: repository.MaxPageLimit + 1}},
			{page: repository.Page{After: "not a cursor"}},
			{page: repository.Page{After: "AAAA"}},
			{filter: repository.RunFilter{Statuses: []models.RunStatus{"paused"}}},
			{filter: repository.RunFilter{CreatedBefore: time.Date(12345, 1, 1, 0, 0, 0, 0, time.UTC)}},
		} {
			_, err := e.repo.ListFeatureRuns(e.ctx, c.filter, c.page)
			assert.ErrorIs(t, err, repository.ErrInvalidInput, "%+v", c)
		}
	})
}
