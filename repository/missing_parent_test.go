package repository_test

import (
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// TestMissingParentOfUnnamedConstraint names the missing parent of an
// invocation whose foreign-key error named no constraint, as a Citus
// coordinator's did before the dialect read its shard constraints, and as
// a worker's message in another language still does. On PostgreSQL the
// parents were read with ? placeholders, which reached the server raw
// (syntax error at or near "AND"); inside a transaction the read could
// not run at all, the failed insert having aborted it.
func TestMissingParentOfUnnamedConstraint(t *testing.T) {
	t.Parallel()
	for _, db := range dbtest.All() {
		t.Run(db.Name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			gdb := db.Open(t)
			require.NoError(t, migrate.Up(ctx, gdb))
			repo := repository.New(gdb)
			run, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan"})
			require.NoError(t, err)
			phase, err := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{FeatureRunID: run, Phase: "plan"})
			require.NoError(t, err)
			otherRun, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan"})
			require.NoError(t, err)
			otherPhase, err := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{FeatureRunID: otherRun, Phase: "plan"})
			require.NoError(t, err)
			otherInvocation, err := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: otherRun, Agent: "coder", Model: "m"})
			require.NoError(t, err)
			missing := uuid.New()

			for _, c := range []struct {
				name string
				in   repository.NewAgentInvocation
				want string
			}{
				{"PhaseMissing", repository.NewAgentInvocation{FeatureRunID: run, PhaseResultID: &missing}, "phase result " + missing.String()},
				{"PhaseInAnotherRun", repository.NewAgentInvocation{FeatureRunID: run, PhaseResultID: &otherPhase}, "phase result " + otherPhase.String()},
				{"ParentMissing", repository.NewAgentInvocation{FeatureRunID: run, PhaseResultID: &phase, ParentInvocationID: &missing}, "parent invocation " + missing.String()},
				{"ParentInAnotherRun", repository.NewAgentInvocation{FeatureRunID: run, ParentInvocationID: &otherInvocation}, "parent invocation " + otherInvocation.String()},
				{"RunMissing", repository.NewAgentInvocation{FeatureRunID: missing}, "feature run " + missing.String()},
			} {
				t.Run(c.name, func(t *testing.T) {
					err := repository.MissingParent(ctx, repo, c.in, "")
					require.ErrorIs(t, err, repository.ErrNotFound)
					require.ErrorContains(t, err, c.want)
				})
			}

			// Inside a transaction the insert's failure comes first; on
			// PostgreSQL it aborted the transaction, so only the parents
			// that may be missing can be named.
			t.Run("InTransaction", func(t *testing.T) {
				in := repository.NewAgentInvocation{FeatureRunID: run, PhaseResultID: &missing, Agent: "coder", Model: "m"}
				sentinel := errors.New("rolled back")
				err := repo.Transaction(ctx, func(tx *repository.Repository) error {
					_, err := tx.CreateAgentInvocation(ctx, in)
					require.ErrorIs(t, err, repository.ErrNotFound)
					err = repository.MissingParent(ctx, tx, in, "")
					require.ErrorIs(t, err, repository.ErrNotFound)
					require.ErrorContains(t, err, "phase result "+missing.String())
					return sentinel
				})
				require.ErrorIs(t, err, sentinel)
			})
		})
	}
}
