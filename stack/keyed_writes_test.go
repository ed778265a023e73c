package stack_test

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// keyedWrite is one call of a write of the contract, on rows named after a key.
type keyedWrite struct {
	name string
	call func(ctx context.Context, r *repository.Repository) error
}

// contractWrites returns the fifteen writes of the contract on rows of
// their own, named after key, in an order in which each finds the rows it
// needs and succeeds. Some creates come twice, so that each of the two
// transitions out of a state has a row of its own to move. The IDs derive
// from key, so calling a write again is a replay, as a durable workflow
// makes after a crash, and must return nil too.
func contractWrites(key string) []keyedWrite {
	id := func(parts ...string) uuid.UUID {
		return repository.StableID(append([]string{key}, parts...)...)
	}
	run, failedRun := id("run"), id("failed-run")
	passed, failed := id("phase", "plan"), id("phase", "test")
	invocation := id("invocation")
	sandbox, answered, expired := key+"/sandbox", key+"/cta/answered", key+"/cta/expired"
	createRun := func(id uuid.UUID) func(context.Context, *repository.Repository) error {
		return func(ctx context.Context, r *repository.Repository) error {
			_, err := r.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: id, Phase: "plan", Memories: []any{"m"}, Metadata: map[string]any{"key": key}})
			return err
		}
	}
	createPhase := func(id uuid.UUID, phase string) func(context.Context, *repository.Repository) error {
		return func(ctx context.Context, r *repository.Repository) error {
			_, err := r.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: id, FeatureRunID: run, Phase: phase})
			return err
		}
	}
	createCTA := func(id string) func(context.Context, *repository.Repository) error {
		return func(ctx context.Context, r *repository.Repository) error {
			return r.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: id, FeatureRunID: run, Kind: "approval", RequestData: map[string]any{"ask": "ok?"}})
		}
	}
	return []keyedWrite{
		{"CreateFeatureRun", createRun(run)},
		{"CreateFeatureRun", createRun(failedRun)},
		{"UpdateFeatureRunPhase", func(ctx context.Context, r *repository.Repository) error {
			return r.UpdateFeatureRunPhase(ctx, run, "implement")
		}},
		{"UpdateFeatureRunMemories", func(ctx context.Context, r *repository.Repository) error {
			return r.UpdateFeatureRunMemories(ctx, run, []any{"one", map[string]any{"two": 2}})
		}},
		{"CreateSandboxRecord", func(ctx context.Context, r *repository.Repository) error {
			return r.CreateSandboxRecord(ctx, repository.NewSandbox{ID: sandbox, FeatureRunID: run, Provider: "e2b"})
		}},
		{"UpdateSandboxStatus", func(ctx context.Context, r *repository.Repository) error {
			return r.UpdateSandboxStatus(ctx, sandbox, models.SandboxRunning)
		}},
		{"CreatePhaseResult", createPhase(passed, "plan")},
		{"CreatePhaseResult", createPhase(failed, "test")},
		{"PassPhaseResult", func(ctx context.Context, r *repository.Repository) error {
			return r.PassPhaseResult(ctx, passed, map[string]any{"ok": true})
		}},
		{"FailPhaseResult", func(ctx context.Context, r *repository.Repository) error {
			return r.FailPhaseResult(ctx, failed)
		}},
		{"CreateAgentInvocation", func(ctx context.Context, r *repository.Repository) error {
			_, err := r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{ID: invocation, FeatureRunID: run, PhaseResultID: &passed, Agent: "coder", Model: "m"})
			return err
		}},
		{"CompleteAgentInvocation", func(ctx context.Context, r *repository.Repository) error {
			return r.CompleteAgentInvocation(ctx, invocation, repository.InvocationResult{Steps: []any{"s"}, ToolCalls: []any{"t"}, InputTokens: 1, OutputTokens: 2, CostNanoUSD: 3})
		}},
		{"CreateCTAEvent", createCTA(answered)},
		{"CreateCTAEvent", createCTA(expired)},
		{"CompleteCTAEvent", func(ctx context.Context, r *repository.Repository) error {
			return r.CompleteCTAEvent(ctx, answered, "yes")
		}},
		{"TimeoutCTAEvent", func(ctx context.Context, r *repository.Repository) error {
			return r.TimeoutCTAEvent(ctx, expired)
		}},
		{"CompleteFeatureRun", func(ctx context.Context, r *repository.Repository) error {
			return r.CompleteFeatureRun(ctx, run)
		}},
		{"FailFeatureRun", func(ctx context.Context, r *repository.Repository) error {
			return r.FailFeatureRun(ctx, failedRun)
		}},
	}
}

// statusesPerKey is how many rows contractWrites(key) leaves in each
// status of each table: every row it creates ends in a status of its own.
var statusesPerKey = map[string]map[string]int64{
	"feature_runs":      {string(models.RunCompleted): 1, string(models.RunFailed): 1},
	"sandboxes":         {string(models.SandboxRunning): 1},
	"phase_results":     {string(models.PhasePassed): 1, string(models.PhaseFailed): 1},
	"agent_invocations": {string(models.InvocationCompleted): 1},
	"cta_events":        {string(models.CTACompleted): 1, string(models.CTATimedOut): 1},
}

// writeAll makes every write of contractWrites(key) twice, the second time
// as a replay, and returns the first error, naming the write.
func writeAll(ctx context.Context, r *repository.Repository, key string) error {
	for _, w := range contractWrites(key) {
		for call := range 2 {
			if err := w.call(ctx, r); err != nil {
				return fmt.Errorf("%s (call %d of 2): %w", w.name, call+1, err)
			}
		}
	}
	return nil
}
