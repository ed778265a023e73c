package contracttest

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// fixture is one row of each table, each in its initial state.
type fixture struct {
	run, phase, invocation uuid.UUID
	sandbox, cta           string
}

func (e *env) fixture() fixture {
	e.t.Helper()
	run := e.newRun()
	return fixture{
		run:        run,
		phase:      e.newPhase(run),
		invocation: e.newInvocation(run),
		sandbox:    e.newSandbox(run),
		cta:        e.newCTA(run),
	}
}

// write is one call of a contract write that succeeds on a fresh fixture.
type write struct {
	name string
	call func(ctx context.Context, r *repository.Repository, f fixture) error
}

// writes returns the fifteen writes of the contract.
func writes() []write {
	return []write{
		{"CreateFeatureRun", func(ctx context.Context, r *repository.Repository, f fixture) error {
			_, err := r.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: uuid.New(), Phase: "plan", Memories: []any{"m"}, Metadata: map[string]any{"k": "v"}})
			return err
		}},
		{"UpdateFeatureRunPhase", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.UpdateFeatureRunPhase(ctx, f.run, "implement")
		}},
		{"UpdateFeatureRunMemories", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.UpdateFeatureRunMemories(ctx, f.run, []any{"one", map[string]any{"two": 2}})
		}},
		{"CompleteFeatureRun", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.CompleteFeatureRun(ctx, f.run)
		}},
		{"FailFeatureRun", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.FailFeatureRun(ctx, f.run)
		}},
		{"CreateSandboxRecord", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.CreateSandboxRecord(ctx, repository.NewSandbox{ID: uuid.NewString(), FeatureRunID: f.run, Provider: "e2b"})
		}},
		{"UpdateSandboxStatus", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.UpdateSandboxStatus(ctx, f.sandbox, models.SandboxRunning)
		}},
		{"CreatePhaseResult", func(ctx context.Context, r *repository.Repository, f fixture) error {
			_, err := r.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: uuid.New(), FeatureRunID: f.run, Phase: "test"})
			return err
		}},
		{"PassPhaseResult", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.PassPhaseResult(ctx, f.phase, map[string]any{"ok": true})
		}},
		{"FailPhaseResult", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.FailPhaseResult(ctx, f.phase)
		}},
		{"CreateAgentInvocation", func(ctx context.Context, r *repository.Repository, f fixture) error {
			started := time.Now()
			_, err := r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{
				ID: uuid.New(), FeatureRunID: f.run, PhaseResultID: &f.phase, ParentInvocationID: &f.invocation,
				Agent: "coder", Model: "m", Provider: "anthropic", StartedAt: &started, Input: "do it",
			})
			return err
		}},
		{"CompleteAgentInvocation", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.CompleteAgentInvocation(ctx, f.invocation, repository.InvocationResult{
				Steps: []any{"s"}, ToolCalls: []any{"t"}, InputTokens: 10, OutputTokens: 2, CacheReadInputTokens: 4, CacheWriteInputTokens: 5,
				ReasoningOutputTokens: 1, CostNanoUSD: 3, ResponseModel: "m-1", ProviderRequestID: "r", FinishReason: "stop", TimeToFirstTokenMicros: ptr[int64](7),
			})
		}},
		{"CreateCTAEvent", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: uuid.NewString(), FeatureRunID: f.run, Kind: "approval", RequestData: "ok?"})
		}},
		{"CompleteCTAEvent", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.CompleteCTAEvent(ctx, f.cta, "yes")
		}},
		{"TimeoutCTAEvent", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.TimeoutCTAEvent(ctx, f.cta)
		}},
	}
}
