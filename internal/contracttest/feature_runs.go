package contracttest

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// FeatureRuns tests CreateFeatureRun, UpdateFeatureRunPhase,
// CompleteFeatureRun and FailFeatureRun.
func FeatureRuns(t *testing.T, open dbtest.Opener) {
	t.Run("CreateZeroIDGetsUUIDv7", func(t *testing.T) {
		e := setup(t, open)
		id, err := e.repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{Phase: "plan", Metadata: map[string]any{"ticket": "T-1"}})
		require.NoError(t, err)
		assert.Equal(t, uuid.Version(7), id.Version())
		var run models.FeatureRun
		e.get(&run, id)
		assert.Equal(t, "plan", run.Phase)
		assert.Equal(t, models.RunRunning, run.Status)
		jsonEq(t, `[]`, run.Memories)
		jsonEq(t, `{"ticket":"T-1"}`, run.Metadata)
		assert.Nil(t, run.CompletedAt)
		assert.False(t, run.CreatedAt.IsZero())

		other, err := e.repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{Phase: "plan"})
		require.NoError(t, err)
		assert.NotEqual(t, id, other, "each zero-ID create is a new run")
	})

	t.Run("CreateReplayKeepsFirstWrite", func(t *testing.T) {
		e := setup(t, open)
		id := repository.StableID("run", "event-1")
		got, err := e.repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{ID: id, Phase: "plan", Memories: []any{"a"}})
		require.NoError(t, err)
		require.Equal(t, id, got)
		before := e.snapshot()

		got, err = e.repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{ID: id, Phase: "review", Memories: []any{"b"}})
		require.NoError(t, err)
		assert.Equal(t, id, got)
		assert.Equal(t, before, e.snapshot(), "a replayed create changes nothing")
	})

	t.Run("CreateConcurrentReplays", func(t *testing.T) {
		e := setup(t, open)
		id := repository.StableID("run", "event-16")
		errs := dbtest.Concurrently(16, func(i int) error {
			got, err := e.repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{ID: id, Phase: "plan"})
			if err == nil && got != id {
				t.Errorf("goroutine %d got ID %s, want %s", i, got, id)
			}
			return err
		})
		for _, err := range errs {
			require.NoError(t, err)
		}
		assert.EqualValues(t, 1, e.count("feature_runs"))
	})

	t.Run("UpdatePhase", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		require.NoError(t, e.repo.UpdateFeatureRunPhase(e.ctx, run, "implement"))
		var got models.FeatureRun
		e.get(&got, run)
		assert.Equal(t, "implement", got.Phase)

		before := e.snapshot()
		require.NoError(t, e.repo.UpdateFeatureRunPhase(e.ctx, run, "implement"), "same phase is a no-op")
		assert.Equal(t, before, e.snapshot())

		require.ErrorIs(t, e.repo.UpdateFeatureRunPhase(e.ctx, uuid.New(), "implement"), repository.ErrNotFound)
	})

	t.Run("PhaseOfFinishedRunIsFinal", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		require.NoError(t, e.repo.UpdateFeatureRunPhase(e.ctx, run, "review"))
		require.NoError(t, e.repo.CompleteFeatureRun(e.ctx, run))
		before := e.snapshot()

		err := e.repo.UpdateFeatureRunPhase(e.ctx, run, "plan")
		require.ErrorIs(t, err, repository.ErrInvalidTransition)
		var terr *repository.TransitionError
		require.ErrorAs(t, err, &terr)
		assert.Contains(t, terr.From, "completed")
		require.NoError(t, e.repo.UpdateFeatureRunPhase(e.ctx, run, "review"), "a replay of the last phase is a no-op")
		assert.Equal(t, before, e.snapshot())
	})

	finishers := map[string]struct {
		call func(e *env, id uuid.UUID) error
		to   models.RunStatus
	}{
		"Complete": {func(e *env, id uuid.UUID) error { return e.repo.CompleteFeatureRun(e.ctx, id) }, models.RunCompleted},
		"Fail":     {func(e *env, id uuid.UUID) error { return e.repo.FailFeatureRun(e.ctx, id) }, models.RunFailed},
	}
	for name, f := range finishers {
		t.Run(name, func(t *testing.T) {
			e := setup(t, open)
			run := e.newRun()
			require.NoError(t, f.call(e, run))
			var got models.FeatureRun
			e.get(&got, run)
			assert.Equal(t, f.to, got.Status)
			require.NotNil(t, got.CompletedAt)

			before := e.snapshot()
			require.NoError(t, f.call(e, run), "repeating the transition is a no-op")
			assert.Equal(t, before, e.snapshot())

			for otherName, other := range finishers {
				if otherName == name {
					continue
				}
				err := other.call(e, run)
				require.ErrorIs(t, err, repository.ErrInvalidTransition, "%s after %s", otherName, name)
				var terr *repository.TransitionError
				require.ErrorAs(t, err, &terr)
				assert.Equal(t, string(f.to), terr.From)
				assert.Equal(t, string(other.to), terr.To)
			}
			assert.Equal(t, before, e.snapshot(), "a refused transition changes nothing")

			require.ErrorIs(t, f.call(e, uuid.New()), repository.ErrNotFound)
		})
	}

	t.Run("FailWithErrorKeepsFirstMessage", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		require.NoError(t, e.repo.FailFeatureRunWithError(e.ctx, run, "sandbox crashed"))
		require.NoError(t, e.repo.FailFeatureRunWithError(e.ctx, run, "a later message"))
		var got models.FeatureRun
		e.get(&got, run)
		require.NotNil(t, got.Error)
		assert.Equal(t, "sandbox crashed", *got.Error)
	})

	t.Run("ConcurrentCompleteAndFail", func(t *testing.T) {
		e := setup(t, open)
		for range 10 {
			run := e.newRun()
			errs := dbtest.Concurrently(16, func(i int) error {
				if i%2 == 0 {
					return e.repo.CompleteFeatureRun(e.ctx, run)
				}
				return e.repo.FailFeatureRun(e.ctx, run)
			})
			var got models.FeatureRun
			e.get(&got, run)
			for i, err := range errs {
				wins := (i%2 == 0) == (got.Status == models.RunCompleted)
				if wins {
					assert.NoError(t, err, "goroutine %d asked for the final status", i)
				} else {
					assert.ErrorIs(t, err, repository.ErrInvalidTransition, "goroutine %d lost", i)
				}
			}
		}
	})

	t.Run("DeleteCascades", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		phase := e.newPhase(run)
		_, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: run, PhaseResultID: &phase, Agent: "coder"})
		require.NoError(t, err)
		e.newSandbox(run)
		e.newCTA(run)
		keep := e.newRun()
		e.newSandbox(keep)

		require.NoError(t, e.db.Delete(&models.FeatureRun{ID: run}).Error)
		for table, want := range map[string]int64{"feature_runs": 1, "sandboxes": 1, "phase_results": 0, "agent_invocations": 0, "cta_events": 0} {
			assert.Equal(t, want, e.count(table), table)
		}
	})
}
