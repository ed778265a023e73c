package contracttest

import (
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/repository"
)

// Transaction tests Repository.Transaction.
func Transaction(t *testing.T, open dbtest.Opener) {
	t.Run("CommitsOnNil", func(t *testing.T) {
		e := setup(t, open)
		var run uuid.UUID
		require.NoError(t, e.repo.Transaction(e.ctx, func(tx *repository.Repository) error {
			var err error
			run, err = tx.CreateFeatureRun(e.ctx, repository.NewFeatureRun{Phase: "plan"})
			if err != nil {
				return err
			}
			return tx.UpdateFeatureRunMemories(e.ctx, run, []any{"in a transaction"})
		}))
		assert.EqualValues(t, 1, e.count("feature_runs"))
	})

	t.Run("RollsBackOnError", func(t *testing.T) {
		e := setup(t, open)
		boom := errors.New("boom")
		err := e.repo.Transaction(e.ctx, func(tx *repository.Repository) error {
			run, err := tx.CreateFeatureRun(e.ctx, repository.NewFeatureRun{Phase: "plan"})
			if err != nil {
				return err
			}
			if err := tx.CreateSandboxRecord(e.ctx, repository.NewSandbox{ID: "s", FeatureRunID: run}); err != nil {
				return err
			}
			return boom
		})
		require.ErrorIs(t, err, boom)
		assert.Zero(t, e.count("feature_runs"))
		assert.Zero(t, e.count("sandboxes"))
	})

	t.Run("SentinelsInside", func(t *testing.T) {
		e := setup(t, open)
		err := e.repo.Transaction(e.ctx, func(tx *repository.Repository) error {
			return tx.CompleteFeatureRun(e.ctx, uuid.New())
		})
		require.ErrorIs(t, err, repository.ErrNotFound)
	})
}
