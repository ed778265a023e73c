package contracttest

import (
	"errors"
	"fmt"
	"sort"
	"sync"
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

	// hold answers the events ids in a transaction and keeps it open, so
	// that their rows stay locked, until the returned function ends it,
	// committing or rolling back.
	hold := func(e *env, ids ...string) (end func(commit bool)) {
		e.t.Helper()
		held, release, done := make(chan error, 1), make(chan bool), make(chan error, 1)
		go func() {
			done <- e.repo.Transaction(e.ctx, func(tx *repository.Repository) error {
				for _, id := range ids {
					if err := tx.CompleteCTAEvent(e.ctx, id, "held"); err != nil {
						held <- err
						return err
					}
				}
				held <- nil
				if !<-release {
					return errRolledBack
				}
				return nil
			})
		}()
		require.NoError(e.t, <-held)
		var once sync.Once
		end = func(commit bool) {
			once.Do(func() {
				release <- commit
				if err := <-done; commit {
					assert.NoError(e.t, err)
				} else {
					assert.ErrorIs(e.t, err, errRolledBack)
				}
			})
		}
		e.t.Cleanup(func() { end(false) }) // when the test stopped before
		return end
	}
	// sweep starts ExpireCTAEvents and returns its answer's channel.
	sweep := func(e *env, limit int) <-chan []string {
		got := make(chan []string, 1)
		go func() {
			ids, err := e.repo.ExpireCTAEvents(e.ctx, base, limit)
			assert.NoError(e.t, err)
			sort.Strings(ids)
			got <- ids
		}()
		return got
	}
	// A sweep's answer must be linearizable: one that returns fewer than
	// its limit says that no due event is left pending, so it waits for
	// the events other calls hold; one that returns its limit need not.
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("WaitsForAnEventHeldBelowItsLimit/commit=%t", commit), func(t *testing.T) {
			e := setup(t, open)
			if e.db.Dialector.Name() == "sqlite" {
				t.Skip("SQLite runs one transaction at a time: no other call holds an event while a sweep runs")
			}
			create(e, "held", base.Add(-2*time.Minute))
			create(e, "free", base.Add(-time.Minute))
			end := hold(e, "held")
			got := sweep(e, 10)
			select {
			case ids := <-got:
				t.Fatalf("the sweep returned %v while an answer held a due event", ids)
			case <-time.After(200 * time.Millisecond):
			}
			end(commit)
			want := []string{"free", "held"}
			if commit {
				want = []string{"free"}
			}
			assert.Equal(t, want, <-got, "the sweep takes the held event if it is still pending when freed")
		})
	}

	t.Run("PassesOverHeldEventsAtItsLimit", func(t *testing.T) {
		e := setup(t, open)
		if e.db.Dialector.Name() == "sqlite" {
			t.Skip("SQLite runs one transaction at a time: no other call holds an event while a sweep runs")
		}
		create(e, "a-held", base.Add(-3*time.Minute))
		create(e, "b", base.Add(-2*time.Minute))
		create(e, "c", base.Add(-time.Minute))
		end := hold(e, "a-held")
		defer end(true)
		select {
		case ids := <-sweep(e, 2):
			assert.Equal(t, []string{"b", "c"}, ids, "a full sweep passes over the held event")
		case <-time.After(10 * time.Second):
			t.Fatal("a sweep that can claim its limit waited for a held event")
		}
	})

	t.Run("WaitsWhenHeldEventsLeaveItShort", func(t *testing.T) {
		e := setup(t, open)
		if e.db.Dialector.Name() == "sqlite" {
			t.Skip("SQLite runs one transaction at a time: no other call holds an event while a sweep runs")
		}
		create(e, "a-held", base.Add(-3*time.Minute))
		create(e, "b-held", base.Add(-2*time.Minute))
		create(e, "c", base.Add(-time.Minute))
		end := hold(e, "a-held", "b-held")
		// Three are due, more than the limit, but two are held: the sweep
		// cannot claim two without them.
		got := sweep(e, 2)
		select {
		case ids := <-got:
			t.Fatalf("the sweep returned %v, short of its limit, while answers held due events", ids)
		case <-time.After(200 * time.Millisecond):
		}
		end(true)
		assert.Equal(t, []string{"c"}, <-got)
	})

	t.Run("InsideTransaction", func(t *testing.T) {
		e := setup(t, open)
		create(e, "due-1", base.Add(-2*time.Minute))
		create(e, "due-2", base.Add(-time.Minute))
		for _, limit := range []int{1, 10} {
			var ids []string
			require.NoError(t, e.repo.Transaction(e.ctx, func(tx *repository.Repository) error {
				var err error
				ids, err = tx.ExpireCTAEvents(e.ctx, base, limit)
				return err
			}))
			want := map[int][]string{1: {"due-1"}, 10: {"due-2"}}[limit]
			assert.Equal(t, want, ids, "limit %d", limit)
		}
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

// errRolledBack rolls back a test's transaction.
var errRolledBack = errors.New("rolled back")
