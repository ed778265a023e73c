package contracttest

import (
	"testing"
	"time"

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

	t.Run("CreateRecordsTheStart", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		parent := e.newInvocation(run)
		// Nanoseconds, in another zone: stored in UTC, to the microsecond.
		started := time.Date(2030, 5, 6, 7, 8, 9, 123_456_789, time.FixedZone("UTC+2", 2*3600))
		in := repository.NewAgentInvocation{
			ID: repository.StableID(run.String(), "sub"), FeatureRunID: run, ParentInvocationID: &parent,
			Agent: "researcher", Model: "claude-sonnet-4", Provider: "anthropic", StartedAt: &started,
		}
		_, err := e.repo.CreateAgentInvocation(e.ctx, in)
		require.NoError(t, err)
		got, err := e.repo.GetAgentInvocation(e.ctx, in.ID)
		require.NoError(t, err)
		assert.Equal(t, "anthropic", got.Provider)
		require.NotNil(t, got.ParentInvocationID)
		assert.Equal(t, parent, *got.ParentInvocationID)
		require.NotNil(t, got.StartedAt)
		assert.Equal(t, time.Date(2030, 5, 6, 5, 8, 9, 123_456_000, time.UTC), *got.StartedAt)
		assert.Equal(t, time.UTC, got.StartedAt.Location())
		for _, zero := range []any{got.ResponseModel, got.ProviderRequestID, got.FinishReason, got.CacheReadInputTokens, got.CacheWriteInputTokens, got.ReasoningOutputTokens} {
			assert.Zero(t, zero, "known only at the end")
		}
		assert.Nil(t, got.TimeToFirstTokenMicros)

		before := e.snapshot()
		other := e.newInvocation(run)
		later := started.Add(time.Hour)
		replay := in
		replay.ParentInvocationID, replay.Provider, replay.StartedAt = &other, "openai", &later
		_, err = e.repo.CreateAgentInvocation(e.ctx, replay)
		require.NoError(t, err)
		// A parent that does not exist is no error either: the replay
		// inserts nothing, so nothing is checked, as on PostgreSQL's
		// foreign key.
		missing := uuid.New()
		replay.ParentInvocationID = &missing
		_, err = e.repo.CreateAgentInvocation(e.ctx, replay)
		require.NoError(t, err)
		replay.ParentInvocationID, replay.StartedAt = nil, nil
		_, err = e.repo.CreateAgentInvocation(e.ctx, replay)
		require.NoError(t, err)
		require.NoError(t, e.db.WithContext(e.ctx).Exec("DELETE FROM agent_invocations WHERE id = ?", other).Error)
		assert.Equal(t, before, e.snapshot(), "replays keep the first write")

		plain, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: run, Agent: "a"})
		require.NoError(t, err)
		got, err = e.repo.GetAgentInvocation(e.ctx, plain)
		require.NoError(t, err)
		assert.Empty(t, got.Provider)
		assert.Nil(t, got.ParentInvocationID)
		assert.Nil(t, got.StartedAt)
	})

	full := repository.InvocationResult{
		Output:       "done",
		InputTokens:  10_000,
		OutputTokens: 900,
		// The cache and reasoning counts are parts of the input and output
		// counts: these add up to exactly them.
		CacheReadInputTokens:   6_000,
		CacheWriteInputTokens:  4_000,
		ReasoningOutputTokens:  900,
		CostNanoUSD:            4_567,
		ResponseModel:          "claude-sonnet-4-20250514",
		ProviderRequestID:      "msg_01XFDUDYJgAACzvnptvVoYEL",
		FinishReason:           "end_turn",
		TimeToFirstTokenMicros: ptr[int64](412_345),
	}

	t.Run("CompleteRecordsTheEnd", func(t *testing.T) {
		e := setup(t, open)
		id := e.newInvocation(e.newRun())
		require.NoError(t, e.repo.CompleteAgentInvocation(e.ctx, id, full))
		got, err := e.repo.GetAgentInvocation(e.ctx, id)
		require.NoError(t, err)
		assert.EqualValues(t, 10_000, got.InputTokens)
		assert.EqualValues(t, 900, got.OutputTokens)
		assert.EqualValues(t, 6_000, got.CacheReadInputTokens)
		assert.EqualValues(t, 4_000, got.CacheWriteInputTokens)
		assert.EqualValues(t, 900, got.ReasoningOutputTokens)
		assert.Equal(t, "claude-sonnet-4-20250514", got.ResponseModel)
		assert.Equal(t, "msg_01XFDUDYJgAACzvnptvVoYEL", got.ProviderRequestID)
		assert.Equal(t, "end_turn", got.FinishReason)
		require.NotNil(t, got.TimeToFirstTokenMicros)
		assert.EqualValues(t, 412_345, *got.TimeToFirstTokenMicros)

		before := e.snapshot()
		other := full
		other.CacheReadInputTokens, other.ResponseModel, other.FinishReason, other.TimeToFirstTokenMicros = 1, "gpt-4.1", "length", nil
		require.NoError(t, e.repo.CompleteAgentInvocation(e.ctx, id, other))
		require.ErrorIs(t, e.repo.FailAgentInvocation(e.ctx, id, other, "late"), repository.ErrInvalidTransition)
		assert.Equal(t, before, e.snapshot(), "the first result is kept")
	})

	t.Run("FailRecordsTheEnd", func(t *testing.T) {
		e := setup(t, open)
		id := e.newInvocation(e.newRun())
		partial := repository.InvocationResult{InputTokens: 50, CacheReadInputTokens: 50, ProviderRequestID: "req-1", FinishReason: "error"}
		require.NoError(t, e.repo.FailAgentInvocation(e.ctx, id, partial, "overloaded"))
		got, err := e.repo.GetAgentInvocation(e.ctx, id)
		require.NoError(t, err)
		assert.Equal(t, models.InvocationFailed, got.Status)
		assert.EqualValues(t, 50, got.CacheReadInputTokens)
		assert.Equal(t, "req-1", got.ProviderRequestID)
		assert.Equal(t, "error", got.FinishReason)
		assert.Nil(t, got.TimeToFirstTokenMicros, "nil leaves it unset")
		assert.Empty(t, got.ResponseModel)
	})
}

func ptr[T any](v T) *T { return &v }
