package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// workflow is the feature-run workflow: what a pipeline's durable function
// would do, one engine step per write. Each step writes through
// repo.AtStep(n), n its position in the workflow, as the engine numbers
// it: a zombie of the step, an attempt the engine gave up on that writes
// after later steps ran, then cannot move the run's phase or the
// sandbox's status back.
type workflow struct {
	repo    *repository.Repository
	eventID string
	run     uuid.UUID
	// start is when the workflow was triggered; the simulation's deadlines
	// count from it.
	start time.Time
}

// agentCall is one simulated agent invocation.
type agentCall struct {
	agent, model string
	// input and output count every token, as OpenTelemetry does: the
	// cached input tokens are part of input.
	input, output int64
	// cacheRead and cacheWrite count the input tokens read from and
	// written to the provider's prompt cache.
	cacheRead, cacheWrite int64
	fails                 string
	// subAgents are the agents this one calls.
	subAgents []agentCall
}

// phases is the simulated pipeline: its phases and the agents each calls.
var phases = []struct {
	name   string
	agents []agentCall
}{
	{"plan", []agentCall{{agent: "planner", model: "claude-opus-4", input: 1800, output: 540}}},
	{"implement", []agentCall{
		{agent: "coder", model: "claude-sonnet-4", input: 5200, output: 2100, cacheWrite: 4000, subAgents: []agentCall{
			{agent: "researcher", model: "claude-haiku-4", input: 1500, output: 250, cacheRead: 1200},
		}},
		{agent: "coder", model: "claude-sonnet-4", input: 3900, output: 1200, cacheRead: 3000},
	}},
	{"test", []agentCall{
		{agent: "tester", model: "claude-haiku-4", input: 2600, output: 300, fails: "test runner timed out"},
		{agent: "tester", model: "claude-haiku-4", input: 2700, output: 420},
	}},
	{"review", []agentCall{{agent: "reviewer", model: "claude-opus-4", input: 4100, output: 760}}},
}

// pricesNanoUSD are per-token prices, in billionths of a dollar, for input
// and output tokens. A cache read costs a tenth of the input price, and a
// cache write a quarter more.
var pricesNanoUSD = map[string][2]int64{
	"claude-opus-4":   {15_000, 75_000},
	"claude-sonnet-4": {3_000, 15_000},
	"claude-haiku-4":  {800, 4_000},
}

// cost is what a prices, in billionths of a dollar.
func (a agentCall) cost() int64 {
	p := pricesNanoUSD[a.model]
	plain := a.input - a.cacheRead - a.cacheWrite
	return plain*p[0] + a.cacheRead*p[0]/10 + a.cacheWrite*p[0]*5/4 + a.output*p[1]
}

// id derives the ID of the step's row from the triggering event.
func (w *workflow) id(step string) uuid.UUID { return repository.StableID(w.eventID, step) }

// step runs write as the engine step name, through the workflow's
// Repository at the step's position.
func (w *workflow) step(ctx context.Context, e *engine, name, what string, write func(context.Context, *repository.Repository) error) error {
	return e.step(ctx, name, what, func(ctx context.Context, step int64) error {
		return write(ctx, w.repo.AtStep(step))
	})
}

func (w *workflow) execute(ctx context.Context, e *engine) error {
	e.begin()
	sandbox := "sbx-" + w.id("sandbox").String()[:8]
	steps := []struct {
		name, what string
		write      func(context.Context, *repository.Repository) error
	}{
		{"start", "create feature run", func(ctx context.Context, r *repository.Repository) error {
			_, err := r.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: w.run, Phase: "plan", Metadata: map[string]any{"event": w.eventID}})
			return err
		}},
		{"sandbox/create", "create sandbox " + sandbox, func(ctx context.Context, r *repository.Repository) error {
			return r.CreateSandboxRecord(ctx, repository.NewSandbox{ID: sandbox, FeatureRunID: w.run, Provider: "e2b"})
		}},
		{"sandbox/ready", "sandbox running", func(ctx context.Context, r *repository.Repository) error {
			return r.UpdateSandboxStatus(ctx, sandbox, models.SandboxRunning)
		}},
	}
	for _, s := range steps {
		if err := w.step(ctx, e, s.name, s.what, s.write); err != nil {
			return err
		}
	}
	for _, p := range phases {
		if err := w.phase(ctx, e, p.name, p.agents); err != nil {
			return err
		}
	}
	if err := w.step(ctx, e, "sandbox/stop", "sandbox stopped", func(ctx context.Context, r *repository.Repository) error {
		return r.UpdateSandboxStatus(ctx, sandbox, models.SandboxStopped)
	}); err != nil {
		return err
	}
	return w.step(ctx, e, "finish", "complete feature run", func(ctx context.Context, r *repository.Repository) error {
		return r.CompleteFeatureRun(ctx, w.run)
	})
}

func (w *workflow) phase(ctx context.Context, e *engine, name string, agents []agentCall) error {
	phaseID := w.id("phase/" + name)
	if err := w.step(ctx, e, name+"/start", "enter phase "+name, func(ctx context.Context, r *repository.Repository) error {
		if err := r.UpdateFeatureRunPhase(ctx, w.run, name); err != nil {
			return err
		}
		_, err := r.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: phaseID, FeatureRunID: w.run, Phase: name})
		return err
	}); err != nil {
		return err
	}
	for i, a := range agents {
		step := fmt.Sprintf("%s/%s-%d", name, a.agent, i+1)
		invocation := w.id(step)
		if err := w.step(ctx, e, step, "invoke "+a.agent+" on "+a.model, func(ctx context.Context, r *repository.Repository) error {
			return w.invoke(ctx, r, step, invocation, phaseID, nil, a)
		}); err != nil {
			return err
		}
	}
	if err := w.step(ctx, e, name+"/remember", "append memories", func(ctx context.Context, r *repository.Repository) error {
		return r.UpdateFeatureRunMemories(ctx, w.run, []any{
			map[string]any{"phase": name, "lesson": "keep the " + name + " notes short"},
			"the repository uses Go modules",
		})
	}); err != nil {
		return err
	}
	switch name {
	case "plan":
		if err := w.askAndAnswer(ctx, e); err != nil {
			return err
		}
	case "review":
		if err := w.askAndTimeOut(ctx, e); err != nil {
			return err
		}
	}
	return w.step(ctx, e, name+"/pass", "phase "+name+" passed", func(ctx context.Context, r *repository.Repository) error {
		return r.PassPhaseResult(ctx, phaseID, map[string]any{"phase": name, "summary": name + " done"})
	})
}

// invoke records, through r, one agent invocation, from start to result,
// and those of the sub-agents it calls, which start after it and end
// before it. Every ID derives from the step, so the whole call replays
// safely.
func (w *workflow) invoke(ctx context.Context, r *repository.Repository, step string, id, phaseID uuid.UUID, parent *uuid.UUID, a agentCall) error {
	started := time.Now()
	if _, err := r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{
		ID: id, FeatureRunID: w.run, PhaseResultID: &phaseID, ParentInvocationID: parent,
		Agent: a.agent, Model: a.model, Provider: "anthropic", StartedAt: &started,
		Input: map[string]any{"task": "work on " + w.eventID},
	}); err != nil {
		return err
	}
	for i, sub := range a.subAgents {
		subStep := fmt.Sprintf("%s/%s-%d", step, sub.agent, i+1)
		if err := w.invoke(ctx, r, subStep, w.id(subStep), phaseID, &id, sub); err != nil {
			return err
		}
	}
	firstToken := int64(180_000)
	result := repository.InvocationResult{
		Steps: []any{
			map[string]any{"type": "thought", "text": "read the relevant files"},
			map[string]any{"type": "action", "text": "run the tools"},
		},
		ToolCalls: []any{
			map[string]any{"tool": "read_file", "args": map[string]any{"path": "main.go"}},
			map[string]any{"tool": "bash", "args": map[string]any{"cmd": "go test ./..."}},
		},
		Output:                 map[string]any{"ok": a.fails == ""},
		InputTokens:            a.input,
		OutputTokens:           a.output,
		CacheReadInputTokens:   a.cacheRead,
		CacheWriteInputTokens:  a.cacheWrite,
		CostNanoUSD:            a.cost(),
		ResponseModel:          a.model + "-20250514",
		ProviderRequestID:      "msg_" + id.String()[:8],
		FinishReason:           "end_turn",
		TimeToFirstTokenMicros: &firstToken,
	}
	if a.fails != "" {
		return r.FailAgentInvocation(ctx, id, result, a.fails)
	}
	return r.CompleteAgentInvocation(ctx, id, result)
}

// askAndAnswer asks a person to approve the plan; they answer in time.
func (w *workflow) askAndAnswer(ctx context.Context, e *engine) error {
	const cta = "approve-plan"
	id := cta + "-" + w.run.String()[:8]
	if err := w.step(ctx, e, "plan/ask", "ask for plan approval", func(ctx context.Context, r *repository.Repository) error {
		return r.CreateCTAEvent(ctx, repository.NewCTAEvent{
			ID: id, FeatureRunID: w.run, Kind: "approval",
			RequestData: map[string]any{"question": "Approve the plan?"}, ExpiresAt: w.start.Add(time.Hour),
		})
	}); err != nil {
		return err
	}
	return w.step(ctx, e, "plan/answer", "approval received", func(ctx context.Context, r *repository.Repository) error {
		return r.CompleteCTAEvent(ctx, id, map[string]any{"approved": true, "by": "alice"})
	})
}

// askAndTimeOut asks a person to confirm the deploy; nobody answers, so
// the sweeper times the request out and the workflow's own timeout, a
// moment later, finds it already timed out.
func (w *workflow) askAndTimeOut(ctx context.Context, e *engine) error {
	id := "confirm-deploy-" + w.run.String()[:8]
	deadline := w.start.Add(30 * time.Minute)
	if err := w.step(ctx, e, "review/ask", "ask to confirm the deploy", func(ctx context.Context, r *repository.Repository) error {
		return r.CreateCTAEvent(ctx, repository.NewCTAEvent{
			ID: id, FeatureRunID: w.run, Kind: "confirmation",
			RequestData: map[string]any{"question": "Deploy now?"}, ExpiresAt: deadline,
		})
	}); err != nil {
		return err
	}
	if err := w.step(ctx, e, "review/sweep", "sweeper: deadline passed", func(ctx context.Context, r *repository.Repository) error {
		// Thirty-one simulated minutes later.
		_, err := r.ExpireCTAEvents(ctx, deadline.Add(time.Minute), 100)
		return err
	}); err != nil {
		return err
	}
	return w.step(ctx, e, "review/timeout", "no answer: proceed without", func(ctx context.Context, r *repository.Repository) error {
		err := r.TimeoutCTAEvent(ctx, id)
		if errors.Is(err, repository.ErrInvalidTransition) {
			// The person answered just before the timeout: their answer
			// stands, and the workflow should read it instead.
			return nil
		}
		return err
	})
}
