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

// SubAgents tests the link from an agent invocation to the invocation that
// called it: the parent must be an invocation of the same run, whether the
// database enforces it with a foreign key (PostgreSQL) or with triggers
// (SQLite, see models.AgentInvocation.ParentInvocationID).
func SubAgents(t *testing.T, open dbtest.Opener) {
	t.Run("ThreeLevels", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		root := e.newInvocation(run)
		child := e.subInvocation(run, root)
		grandchild := e.subInvocation(run, child)
		got, err := e.repo.GetAgentInvocation(e.ctx, grandchild)
		require.NoError(t, err)
		require.NotNil(t, got.ParentInvocationID)
		assert.Equal(t, child, *got.ParentInvocationID)
	})

	t.Run("ParentNotInTheRun", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		phase := e.newPhase(run)
		otherRun := e.newRun()
		ofOtherRun := e.newInvocation(otherRun)
		missing := repository.StableID("missing", "parent")
		before := e.snapshot()
		for name, in := range map[string]repository.NewAgentInvocation{
			"missing":                {FeatureRunID: run, ParentInvocationID: &missing, Agent: "a"},
			"in another run":         {FeatureRunID: run, ParentInvocationID: &ofOtherRun, Agent: "a"},
			"missing, with a phase":  {FeatureRunID: run, PhaseResultID: &phase, ParentInvocationID: &missing, Agent: "a"},
			"another run's, with ID": {ID: uuid.New(), FeatureRunID: run, ParentInvocationID: &ofOtherRun, Agent: "a"},
		} {
			_, err := e.repo.CreateAgentInvocation(e.ctx, in)
			require.ErrorIs(t, err, repository.ErrNotFound, name)
			assert.NotErrorIs(t, err, repository.ErrInvalidInput, name)
			assert.Contains(t, err.Error(), "parent invocation "+in.ParentInvocationID.String(), name)
			assert.Contains(t, err.Error(), "of feature run "+run.String(), name)
		}
		assert.Equal(t, before, e.snapshot(), "nothing was written")

		// Which missing parent is named when the run is missing too is the
		// database's choice; what matters is that it is ErrNotFound.
		_, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: uuid.New(), ParentInvocationID: &missing, Agent: "a"})
		require.ErrorIs(t, err, repository.ErrNotFound)
	})

	t.Run("OwnIDIsInvalid", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		id := uuid.New()
		rec := dbtest.RecorderOf(e.db)
		rec.Start()
		_, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{ID: id, FeatureRunID: run, ParentInvocationID: &id, Agent: "a"})
		stmts, _ := rec.Stop()
		var ierr *repository.InputError
		require.ErrorAs(t, err, &ierr)
		assert.Equal(t, "NewAgentInvocation.ParentInvocationID", ierr.Field)
		assert.Empty(t, stmts)
	})

	t.Run("WritesByHandAreChecked", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		root := e.newInvocation(run)
		child := e.subInvocation(run, root)
		ofOtherRun := e.newInvocation(e.newRun())
		db := e.db.WithContext(e.ctx)
		before := e.snapshot()
		for name, err := range map[string]error{
			"a missing parent":           db.Exec("UPDATE agent_invocations SET parent_invocation_id = ? WHERE id = ?", uuid.NewString(), child.String()).Error,
			"a parent of another run":    db.Exec("UPDATE agent_invocations SET parent_invocation_id = ? WHERE id = ?", ofOtherRun.String(), child.String()).Error,
			"a parent's new ID":          db.Exec("UPDATE agent_invocations SET id = ? WHERE id = ?", uuid.NewString(), root.String()).Error,
			"an insert of a missing one": db.Exec("INSERT INTO agent_invocations (id, feature_run_id, parent_invocation_id, agent, model, status, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at) VALUES (?, ?, ?, 'a', '', 'running', 0, 0, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)", uuid.NewString(), run.String(), uuid.NewString()).Error,
			"an insert of another run's": db.Exec("INSERT INTO agent_invocations (id, feature_run_id, parent_invocation_id, agent, model, status, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at) VALUES (?, ?, ?, 'a', '', 'running', 0, 0, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)", uuid.NewString(), run.String(), ofOtherRun.String()).Error,
		} {
			require.Error(t, err, name)
			assert.Contains(t, err.Error(), "fk_agent_invocations_parent_invocation", "%s: refused as the foreign key: %v", name, err)
		}
		assert.Equal(t, before, e.snapshot())
		require.NoError(t, db.Exec("UPDATE agent_invocations SET parent_invocation_id = NULL WHERE id = ?", child.String()).Error)
		require.NoError(t, db.Exec("UPDATE agent_invocations SET parent_invocation_id = ? WHERE id = ?", root.String(), child.String()).Error)
	})

	t.Run("DeletingAParent", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		root := e.newInvocation(run)
		child := e.subInvocation(run, root)
		grandchild := e.subInvocation(run, child)
		sibling := e.newInvocation(run)
		require.NoError(t, e.db.WithContext(e.ctx).Exec("DELETE FROM agent_invocations WHERE id = ?", root.String()).Error)
		var left []models.AgentInvocation
		require.NoError(t, e.db.WithContext(e.ctx).Order("created_at, id").Find(&left).Error)
		parents := map[uuid.UUID]*uuid.UUID{}
		for _, inv := range left {
			parents[inv.ID] = inv.ParentInvocationID
		}
		if e.db.Dialector.Name() == "sqlite" {
			// The triggers detach the deleted invocation's sub-agents,
			// which keep theirs.
			assert.Equal(t, map[uuid.UUID]*uuid.UUID{child: nil, grandchild: &child, sibling: nil}, parents)
		} else {
			// ON DELETE CASCADE, at every level.
			assert.Equal(t, map[uuid.UUID]*uuid.UUID{sibling: nil}, parents)
		}

		require.NoError(t, e.db.WithContext(e.ctx).Exec("DELETE FROM feature_runs WHERE id = ?", run.String()).Error)
		assert.Zero(t, e.count("agent_invocations"), "deleting the run deletes every invocation of it")
	})

	t.Run("DeletingARunOfATree", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		other := e.newRun()
		kept := e.subInvocation(other, e.newInvocation(other))
		parent := e.newInvocation(run)
		for range 3 {
			parent = e.subInvocation(run, parent)
		}
		require.NoError(t, e.db.WithContext(e.ctx).Exec("DELETE FROM feature_runs WHERE id = ?", run.String()).Error)
		assert.EqualValues(t, 2, e.count("agent_invocations"))
		got, err := e.repo.GetAgentInvocation(e.ctx, kept)
		require.NoError(t, err)
		assert.NotNil(t, got.ParentInvocationID, "another run's tree is untouched")
	})
}

// subInvocation creates a running agent invocation of run called by parent.
func (e *env) subInvocation(run, parent uuid.UUID) uuid.UUID {
	e.t.Helper()
	id, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{ID: uuid.New(), FeatureRunID: run, ParentInvocationID: &parent, Agent: "sub"})
	require.NoError(e.t, err)
	return id
}
