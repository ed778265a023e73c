package contracttest

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/canonjson"
	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// PhaseResults tests CreatePhaseResult, PassPhaseResult and FailPhaseResult.
func PhaseResults(t *testing.T, open dbtest.Opener) {
	t.Run("Create", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		id, err := e.repo.CreatePhaseResult(e.ctx, repository.NewPhaseResult{FeatureRunID: run, Phase: "plan"})
		require.NoError(t, err)
		assert.Equal(t, uuid.Version(7), id.Version())
		var got models.PhaseResult
		e.get(&got, id)
		assert.Equal(t, models.PhaseRunning, got.Status)
		assert.Equal(t, "plan", got.Phase)

		stable := repository.StableID(run.String(), "plan", "1")
		for range 2 {
			got, err := e.repo.CreatePhaseResult(e.ctx, repository.NewPhaseResult{ID: stable, FeatureRunID: run, Phase: "plan"})
			require.NoError(t, err)
			assert.Equal(t, stable, got)
		}
		before := e.snapshot()
		_, err = e.repo.CreatePhaseResult(e.ctx, repository.NewPhaseResult{ID: stable, FeatureRunID: run, Phase: "test"})
		require.NoError(t, err)
		assert.Equal(t, before, e.snapshot(), "a replayed create keeps the first write")
		assert.EqualValues(t, 2, e.count("phase_results"))
	})

	t.Run("CreateConcurrentReplays", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		id := repository.StableID("phase", "16")
		for _, err := range dbtest.Concurrently(16, func(int) error {
			got, err := e.repo.CreatePhaseResult(e.ctx, repository.NewPhaseResult{ID: id, FeatureRunID: run, Phase: "plan"})
			if err == nil && got != id {
				t.Errorf("got %s, want %s", got, id)
			}
			return err
		}) {
			require.NoError(t, err)
		}
		assert.EqualValues(t, 1, e.count("phase_results"))
	})

	t.Run("CreateForMissingRun", func(t *testing.T) {
		e := setup(t, open)
		_, err := e.repo.CreatePhaseResult(e.ctx, repository.NewPhaseResult{ID: uuid.New(), FeatureRunID: uuid.New(), Phase: "plan"})
		require.ErrorIs(t, err, repository.ErrNotFound)
		assert.Zero(t, e.count("phase_results"))
	})

	t.Run("PassKeepsFirstOutput", func(t *testing.T) {
		e := setup(t, open)
		id := e.newPhase(e.newRun())
		require.NoError(t, e.repo.PassPhaseResult(e.ctx, id, map[string]any{"plan": []string{"step 1"}}))
		before := e.snapshot()
		require.NoError(t, e.repo.PassPhaseResult(e.ctx, id, map[string]any{"plan": "other"}))
		assert.Equal(t, before, e.snapshot())
		var got models.PhaseResult
		e.get(&got, id)
		assert.Equal(t, models.PhasePassed, got.Status)
		jsonEq(t, `{"plan":["step 1"]}`, got.Output)
		assert.NotNil(t, got.FinishedAt)

		require.ErrorIs(t, e.repo.FailPhaseResult(e.ctx, id), repository.ErrInvalidTransition)
		assert.Equal(t, before, e.snapshot())
	})

	t.Run("FailIsFinal", func(t *testing.T) {
		e := setup(t, open)
		id := e.newPhase(e.newRun())
		require.NoError(t, e.repo.FailPhaseResultWithError(e.ctx, id, "tests failed"))
		before := e.snapshot()
		require.NoError(t, e.repo.FailPhaseResult(e.ctx, id))
		err := e.repo.PassPhaseResult(e.ctx, id, "late output")
		require.ErrorIs(t, err, repository.ErrInvalidTransition)
		assert.Equal(t, before, e.snapshot())
		var got models.PhaseResult
		e.get(&got, id)
		assert.Equal(t, models.PhaseFailed, got.Status)
		require.NotNil(t, got.Error)
		assert.Equal(t, "tests failed", *got.Error)
		assert.Nil(t, got.Output)
	})

	t.Run("ScalarOutputsRoundTrip", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		for _, output := range []any{json.Number("12345678901234567890123"), 1.5, -7, "15", true, []any{}} {
			id := e.newPhase(run)
			require.NoError(t, e.repo.PassPhaseResult(e.ctx, id, output))
			var got models.PhaseResult
			e.get(&got, id)
			want, err := canonjson.Marshal(output)
			require.NoError(t, err)
			stored, err := canonjson.Canonicalize(got.Output)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(stored), "output %#v is read back exactly", output)
		}
		id := e.newPhase(run)
		require.NoError(t, e.repo.PassPhaseResult(e.ctx, id, nil))
		var got models.PhaseResult
		e.get(&got, id)
		assert.Empty(t, got.Output, "a nil output is SQL NULL")
	})

	t.Run("ConcurrentPasses", func(t *testing.T) {
		e := setup(t, open)
		id := e.newPhase(e.newRun())
		for _, err := range dbtest.Concurrently(16, func(i int) error { return e.repo.PassPhaseResult(e.ctx, id, i) }) {
			require.NoError(t, err)
		}
		var got models.PhaseResult
		e.get(&got, id)
		assert.Equal(t, models.PhasePassed, got.Status)
	})

	t.Run("Missing", func(t *testing.T) {
		e := setup(t, open)
		require.ErrorIs(t, e.repo.PassPhaseResult(e.ctx, uuid.New(), nil), repository.ErrNotFound)
		require.ErrorIs(t, e.repo.FailPhaseResult(e.ctx, uuid.New()), repository.ErrNotFound)
	})
}
