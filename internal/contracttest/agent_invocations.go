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

// AgentInvocations tests CreateAgentInvocation, CompleteAgentInvocation and
// FailAgentInvocation.
func AgentInvocations(t *testing.T, open dbtest.Opener) {
	t.Run("Create", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		phase := e.newPhase(run)
		id, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{
			FeatureRunID: run, PhaseResultID: &phase, Agent: "planner", Model: "claude-sonnet", Input: map[string]any{"prompt": "plan it"},
		})
		require.NoError(t, err)
		assert.Equal(t, uuid.Version(7), id.Version())
		var got models.AgentInvocation
		e.get(&got, id)
		assert.Equal(t, models.InvocationRunning, got.Status)
		assert.Equal(t, "planner", got.Agent)
		assert.Equal(t, "claude-sonnet", got.Model)
		require.NotNil(t, got.PhaseResultID)
		assert.Equal(t, phase, *got.PhaseResultID)
		jsonEq(t, `{"prompt":"plan it"}`, got.Input)

		stable := repository.StableID(run.String(), "planner", "1")
		for range 2 {
			got, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{ID: stable, FeatureRunID: run, Agent: "planner"})
			require.NoError(t, err)
			assert.Equal(t, stable, got)
		}
		before := e.snapshot()
		_, err = e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{ID: stable, FeatureRunID: run, Agent: "other", Model: "m"})
		require.NoError(t, err)
		assert.Equal(t, before, e.snapshot(), "a replayed create keeps the first write")
	})

	t.Run("CreateConcurrentReplays", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		id := repository.StableID("invocation", "16")
		for _, err := range dbtest.Concurrently(16, func(int) error {
			_, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{ID: id, FeatureRunID: run, Agent: "coder"})
			return err
		}) {
			require.NoError(t, err)
		}
		assert.EqualValues(t, 1, e.count("agent_invocations"))
	})

	t.Run("CreateForMissingParents", func(t *testing.T) {
		e := setup(t, open)
		_, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: uuid.New(), Agent: "coder"})
		require.ErrorIs(t, err, repository.ErrNotFound)
		assert.Contains(t, err.Error(), "feature run")

		run := e.newRun()
		missing := uuid.New()
		_, err = e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: run, PhaseResultID: &missing, Agent: "coder"})
		require.ErrorIs(t, err, repository.ErrNotFound)
		assert.Contains(t, err.Error(), "phase result")

		otherRunsPhase := e.newPhase(e.newRun())
		_, err = e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: run, PhaseResultID: &otherRunsPhase, Agent: "coder"})
		require.ErrorIs(t, err, repository.ErrNotFound, "a phase of another run is not a phase of this one")
		assert.Contains(t, err.Error(), "phase result")
		assert.Zero(t, e.count("agent_invocations"))
	})

	result := repository.InvocationResult{
		Steps:        []any{map[string]any{"thought": "read the code"}, map[string]any{"thought": "edit"}},
		ToolCalls:    []any{map[string]any{"tool": "bash", "args": map[string]any{"cmd": "go test ./..."}}},
		Output:       map[string]any{"patch": "diff --git"},
		InputTokens:  1200,
		OutputTokens: 340,
		CostNanoUSD:  12_345_678,
	}

	t.Run("CompleteKeepsFirstResult", func(t *testing.T) {
		e := setup(t, open)
		id := e.newInvocation(e.newRun())
		require.NoError(t, e.repo.CompleteAgentInvocation(e.ctx, id, result))
		before := e.snapshot()
		require.NoError(t, e.repo.CompleteAgentInvocation(e.ctx, id, repository.InvocationResult{InputTokens: 1}))
		assert.Equal(t, before, e.snapshot())
		require.ErrorIs(t, e.repo.FailAgentInvocation(e.ctx, id, result, "boom"), repository.ErrInvalidTransition)
		assert.Equal(t, before, e.snapshot())

		var got models.AgentInvocation
		e.get(&got, id)
		assert.Equal(t, models.InvocationCompleted, got.Status)
		jsonEq(t, `[{"thought":"read the code"},{"thought":"edit"}]`, got.Steps)
		jsonEq(t, `[{"tool":"bash","args":{"cmd":"go test ./..."}}]`, got.ToolCalls)
		jsonEq(t, `{"patch":"diff --git"}`, got.Output)
		assert.EqualValues(t, 1200, got.InputTokens)
		assert.EqualValues(t, 340, got.OutputTokens)
		assert.EqualValues(t, 12_345_678, got.CostNanoUSD)
		assert.NotNil(t, got.FinishedAt)
		assert.Nil(t, got.Error)
	})

	t.Run("FailIsFinal", func(t *testing.T) {
		e := setup(t, open)
		id := e.newInvocation(e.newRun())
		require.NoError(t, e.repo.FailAgentInvocation(e.ctx, id, repository.InvocationResult{}, "rate limited"))
		before := e.snapshot()
		require.NoError(t, e.repo.FailAgentInvocation(e.ctx, id, repository.InvocationResult{}, "other"))
		require.ErrorIs(t, e.repo.CompleteAgentInvocation(e.ctx, id, result), repository.ErrInvalidTransition)
		assert.Equal(t, before, e.snapshot())
		var got models.AgentInvocation
		e.get(&got, id)
		assert.Equal(t, models.InvocationFailed, got.Status)
		require.NotNil(t, got.Error)
		assert.Equal(t, "rate limited", *got.Error)
		jsonEq(t, `[]`, got.Steps)
	})

	t.Run("ConcurrentCompletes", func(t *testing.T) {
		e := setup(t, open)
		id := e.newInvocation(e.newRun())
		for _, err := range dbtest.Concurrently(16, func(i int) error {
			return e.repo.CompleteAgentInvocation(e.ctx, id, repository.InvocationResult{InputTokens: int64(i)})
		}) {
			require.NoError(t, err)
		}
	})

	t.Run("Missing", func(t *testing.T) {
		e := setup(t, open)
		require.ErrorIs(t, e.repo.CompleteAgentInvocation(e.ctx, uuid.New(), result), repository.ErrNotFound)
		require.ErrorIs(t, e.repo.FailAgentInvocation(e.ctx, uuid.New(), result, ""), repository.ErrNotFound)
	})
}
