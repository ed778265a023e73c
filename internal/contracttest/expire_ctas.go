package contracttest

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// ExpireCTAs tests ExpireCTAEvents.
func ExpireCTAs(t *testing.T, open dbtest.Opener) {
	base := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	create := func(e *env, id string, expires time.Time) {
		e.t.Helper()
		run := e.newRun()
		require.NoError(e.t, e.repo.CreateCTAEvent(e.ctx, repository.NewCTAEvent{ID: id, FeatureRunID: run, ExpiresAt: expires}))
	}

	t.Run("ExpiresDuePendingEvents", func(t *testing.T) {
		e := setup(t, open)
		create(e, "due-1", base.Add(-time.Hour))
		create(e, "due-2", base.Add(-time.Microsecond))
		create(e, "due-exactly", base)
		create(e, "later", base.Add(time.Microsecond))
		create(e, "no-deadline", time.Time{})
		create(e, "answered", base.Add(-2*time.Hour))
		require.NoError(t, e.repo.CompleteCTAEvent(e.ctx, "answered", "yes"))

		ids, err := e.repo.ExpireCTAEvents(e.ctx, base, 10)
		require.NoError(t, err)
		assert.ElementsMatch(t, []string{"due-1", "due-2", "due-exactly"}, ids)
		for id, want := range map[string]models.CTAStatus{
			"due-1": models.CTATimedOut, "due-2": models.CTATimedOut, "due-exactly": models.CTATimedOut,
			"later": models.CTAPending, "no-deadline": models.CTAPending, "answered": models.CTACompleted,
		} {
			cta, err := e.repo.GetCTAEvent(e.ctx, id)
			require.NoError(t, err)
			assert.Equal(t, want, cta.Status, id)
		}
		answered, err := e.repo.GetCTAEvent(e.ctx, "answered")
		require.NoError(t, err)
		jsonEq(t, `"yes"`, answered.ResponseData)

		ids, err = e.repo.ExpireCTAEvents(e.ctx, base, 10)
		require.NoError(t, err)
		assert.Empty(t, ids, "a second sweep finds nothing")
	})

	t.Run("Limit", func(t *testing.T) {
		e := setup(t, open)
		for i := range 7 {
			create(e, fmt.Sprintf("cta-%d", i), base.Add(-time.Duration(i)*time.Minute))
		}
		first, err := e.repo.ExpireCTAEvents(e.ctx, base, 3)
		require.NoError(t, err)
		assert.ElementsMatch(t, []string{"cta-6", "cta-5", "cta-4"}, first, "oldest deadlines first")
		rest, err := e.repo.ExpireCTAEvents(e.ctx, base, 100)
		require.NoError(t, err)
		assert.Len(t, rest, 4)
	})

	t.Run("RaceWithComplete", func(t *testing.T) {
		e := setup(t, open)
		for round := range 20 {
			id := fmt.Sprintf("race-%d", round)
			create(e, id, base.Add(-time.Second))
			var swept []string
			errs := dbtest.Concurrently(2, func(i int) error {
				if i == 0 {
					return e.repo.CompleteCTAEvent(e.ctx, id, map[string]any{"round": round})
				}
				var err error
				swept, err = e.repo.ExpireCTAEvents(e.ctx, base, 10)
				return err
			})
			require.NoError(t, errs[1])
			cta, err := e.repo.GetCTAEvent(e.ctx, id)
			require.NoError(t, err)
			if cta.Status == models.CTACompleted {
				require.NoError(t, errs[0])
				assert.Empty(t, swept, "the sweeper did not claim an answered event")
				jsonEq(t, fmt.Sprintf(`{"round":%d}`, round), cta.ResponseData)
			} else {
				require.Equal(t, models.CTATimedOut, cta.Status)
				require.ErrorIs(t, errs[0], repository.ErrInvalidTransition)
				assert.Equal(t, []string{id}, swept)
			}
		}
	})

	t.Run("ConcurrentSweepers", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		var want []string
		for i := range 200 {
			id := fmt.Sprintf("cta-%03d", i)
			want = append(want, id)
			require.NoError(t, e.repo.CreateCTAEvent(e.ctx, repository.NewCTAEvent{ID: id, FeatureRunID: run, ExpiresAt: base.Add(-time.Minute)}))
		}
		claimed := make([][]string, 4)
		errs := dbtest.Concurrently(4, func(i int) error {
			for {
				ids, err := e.repo.ExpireCTAEvents(e.ctx, base, 7)
				if err != nil || len(ids) == 0 {
					return err
				}
				claimed[i] = append(claimed[i], ids...)
			}
		})
		var all []string
		for i, err := range errs {
			require.NoError(t, err)
			all = append(all, claimed[i]...)
		}
		sort.Strings(all)
		assert.Equal(t, want, all, "every event claimed exactly once")
	})

	t.Run("BadInput", func(t *testing.T) {
		e := setup(t, open)
		for _, limit := range []int{0, -1, repository.MaxPageLimit + 1} {
			_, err := e.repo.ExpireCTAEvents(e.ctx, base, limit)
			assert.ErrorIs(t, err, repository.ErrInvalidInput, "limit %d", limit)
		}
		for _, now := range []time.Time{{}, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)} {
			_, err := e.repo.ExpireCTAEvents(e.ctx, now, 1)
			assert.ErrorIs(t, err, repository.ErrInvalidInput, "now %s", now)
		}
		run := e.newRun()
		err := e.repo.CreateCTAEvent(e.ctx, repository.NewCTAEvent{ID: "far", FeatureRunID: run, ExpiresAt: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)})
		assert.ErrorIs(t, err, repository.ErrInvalidInput)
		assert.Zero(t, e.count("cta_events"))
	})
}
