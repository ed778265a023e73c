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

	// A missing parent is named from the failed INSERT's error: on
	// PostgreSQL the transaction is aborted then, and any further statement
	// would fail with "current transaction is aborted".
	t.Run("MissingParentInside", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		otherRun := e.newRun()
		phaseOfOther := e.newPhase(otherRun)
		invocationOfOther := e.newInvocation(otherRun)
		for _, c := range []struct {
			name, want string
			create     func(tx *repository.Repository) error
		}{
			{"Sandbox", "feature run", func(tx *repository.Repository) error {
				return tx.CreateSandboxRecord(e.ctx, repository.NewSandbox{ID: "s", FeatureRunID: uuid.New()})
			}},
			{"PhaseResult", "feature run", func(tx *repository.Repository) error {
				_, err := tx.CreatePhaseResult(e.ctx, repository.NewPhaseResult{FeatureRunID: uuid.New(), Phase: "plan"})
				return err
			}},
			{"CTAEvent", "feature run", func(tx *repository.Repository) error {
				return tx.CreateCTAEvent(e.ctx, repository.NewCTAEvent{ID: "c", FeatureRunID: uuid.New()})
			}},
			{"InvocationOfMissingRun", "feature run", func(tx *repository.Repository) error {
				_, err := tx.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: uuid.New(), Agent: "a"})
				return err
			}},
			{"InvocationOfMissingPhase", "phase result", func(tx *repository.Repository) error {
				missing := uuid.New()
				_, err := tx.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: run, PhaseResultID: &missing, Agent: "a"})
				return err
			}},
			{"InvocationOfPhaseInAnotherRun", "phase result", func(tx *repository.Repository) error {
				_, err := tx.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: run, PhaseResultID: &phaseOfOther, Agent: "a"})
				return err
			}},
			{"InvocationOfMissingParent", "parent invocation", func(tx *repository.Repository) error {
				missing := uuid.New()
				_, err := tx.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: run, ParentInvocationID: &missing, Agent: "a"})
				return err
			}},
			{"InvocationOfParentInAnotherRun", "parent invocation", func(tx *repository.Repository) error {
				_, err := tx.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: run, ParentInvocationID: &invocationOfOther, Agent: "a"})
				return err
			}},
		} {
			t.Run(c.name, func(t *testing.T) {
				err := e.repo.Transaction(e.ctx, func(tx *repository.Repository) error { return c.create(tx) })
				require.ErrorIs(t, err, repository.ErrNotFound)
				assert.Contains(t, err.Error(), c.want)
				assert.NotContains(t, err.Error(), "aborted")
			})
		}
		assert.EqualValues(t, 1, e.count("agent_invocations"), "only the other run's invocation")
	})
}
