package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// input is what starts a feature run: the event that asked for it. DBOS
// stores it with the workflow, so a recovered workflow gets it back.
type input struct {
	EventID string
}

// pipeline runs the feature-run workflow: the pipeline of
// examples/pipeline, on DBOS, with each write to the database in a DBOS
// step of its own.
type pipeline struct {
	repo *repository.Repository
	// work is the longest a step works before its write, and again after
	// it, as an agent's call would: a process dying then has written, or
	// not, without DBOS having recorded the step.
	work time.Duration
	// trace gets a line when a step begins, when its write returned, and
	// when DBOS recorded it or found it recorded.
	trace io.Writer
}

// agentCall is one simulated agent invocation.
type agentCall struct {
	agent, model  string
	input, output int64 // tokens
	fails         string
}

// phases is the simulated pipeline: its phases and the agents each calls.
var phases = []struct {
	name   string
	agents []agentCall
}{
	{"plan", []agentCall{{agent: "planner", model: "claude-opus-4", input: 1800, output: 540}}},
	{"implement", []agentCall{
		{agent: "coder", model: "claude-sonnet-4", input: 5200, output: 2100},
		{agent: "coder", model: "claude-sonnet-4", input: 3900, output: 1200},
	}},
	{"test", []agentCall{
		{agent: "tester", model: "claude-haiku-4", input: 2600, output: 300, fails: "test runner timed out"},
		{agent: "tester", model: "claude-haiku-4", input: 2700, output: 420},
	}},
	{"review", []agentCall{{agent: "reviewer", model: "claude-opus-4", input: 4100, output: 760}}},
}

// pricesNanoUSD are per-token prices, in billionths of a dollar, for input
// and output tokens.
var pricesNanoUSD = map[string][2]int64{
	"claude-opus-4":   {15_000, 75_000},
	"claude-sonnet-4": {3_000, 15_000},
	"claude-haiku-4":  {800, 4_000},
}

// execution is one execution of the workflow function. DBOS calls the function
// again from the top when it recovers the workflow; steps it recorded
// return their recorded result without running.
type execution struct {
	p       *pipeline
	ctx     dbos.Context
	eventID string
	runID   uuid.UUID
	// start is when the workflow started, from a step DBOS recorded, so
	// that a recovered run computes the same deadlines.
	start time.Time
	// steps counts the steps, which numbers them in the trace.
	steps int
}

// featureRun is the workflow. It returns the feature run's ID.
func (p *pipeline) featureRun(ctx dbos.Context, in input) (string, error) {
	r := &execution{p: p, ctx: ctx, eventID: in.EventID, runID: repository.StableID(in.EventID, "run")}
	// The clock is read in a step: a recovered workflow gets the recorded
	// time back, where reading it again would move every deadline.
	start, err := dbos.RunAsStep(ctx, func(context.Context) (time.Time, error) {
		return time.Now().UTC(), nil
	}, dbos.WithStepName("clock"))
	if err != nil {
		return "", err
	}
	r.start = start
	return r.runID.String(), r.execute()
}

// id derives the ID of a step's row from the triggering event.
func (r *execution) id(step string) uuid.UUID { return repository.StableID(r.eventID, step) }

// step runs write as the DBOS step name, through the pipeline's
// Repository at the step's DBOS step ID plus one (see stepOf): a zombie of
// the step, an attempt DBOS gave up on that writes after later steps ran,
// then cannot move the run's phase or the sandbox's status back.
func (r *execution) step(name string, write func(ctx context.Context, repo *repository.Repository) error) error {
	r.steps++
	n := r.steps
	ran := false
	_, err := dbos.RunAsStep(r.ctx, func(ctx context.Context) (struct{}, error) {
		ran = true
		step, err := stepOf(ctx)
		if err != nil {
			return struct{}{}, err
		}
		fmt.Fprintf(r.p.trace, "step %d %s begin\n", n, name)
		r.p.pause()
		if err := write(ctx, r.p.repo.AtStep(step)); err != nil {
			return struct{}{}, err
		}
		fmt.Fprintf(r.p.trace, "step %d %s wrote\n", n, name)
		r.p.pause()
		return struct{}{}, nil
	}, dbos.WithStepName(name))
	if err != nil {
		return fmt.Errorf("step %s: %w", name, err)
	}
	if ran {
		fmt.Fprintf(r.p.trace, "step %d %s checkpointed\n", n, name)
	} else {
		fmt.Fprintf(r.p.trace, "step %d %s recorded\n", n, name)
	}
	return nil
}

// stepOf returns the step that DBOS runs in ctx, the context it gives the
// step's function: the step's ID plus one. DBOS numbers a workflow's steps
// from 0, in the order the workflow reaches them, the same in every
// execution of the workflow; AtStep's steps start at 1.
func stepOf(ctx context.Context) (int64, error) {
	dctx, ok := ctx.(dbos.Context)
	if !ok {
		return 0, errors.New("not in a DBOS step")
	}
	id, err := dbos.GetStepID(dctx)
	if err != nil {
		return 0, err
	}
	return int64(id) + 1, nil
}

// pause works for a random time up to the pipeline's work.
func (p *pipeline) pause() {
	if p.work > 0 {
		time.Sleep(rand.N(p.work))
	}
}

func (r *execution) execute() error {
	sandbox := "sbx-" + r.id("sandbox").String()[:8]
	steps := []struct {
		name  string
		write func(context.Context, *repository.Repository) error
	}{
		{"start", func(ctx context.Context, repo *repository.Repository) error {
			_, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: r.runID, Phase: "plan", Metadata: map[string]any{"event": r.eventID}})
			return err
		}},
		{"sandbox/create", func(ctx context.Context, repo *repository.Repository) error {
			return repo.CreateSandboxRecord(ctx, repository.NewSandbox{ID: sandbox, FeatureRunID: r.runID, Provider: "e2b"})
		}},
		{"sandbox/ready", func(ctx context.Context, repo *repository.Repository) error {
			return repo.UpdateSandboxStatus(ctx, sandbox, models.SandboxRunning)
		}},
	}
	for _, s := range steps {
		if err := r.step(s.name, s.write); err != nil {
			return err
		}
	}
	for _, p := range phases {
		if err := r.phase(p.name, p.agents); err != nil {
			return err
		}
	}
	if err := r.step("sandbox/stop", func(ctx context.Context, repo *repository.Repository) error {
		return repo.UpdateSandboxStatus(ctx, sandbox, models.SandboxStopped)
	}); err != nil {
		return err
	}
	return r.step("finish", func(ctx context.Context, repo *repository.Repository) error {
		return repo.CompleteFeatureRun(ctx, r.runID)
	})
}

func (r *execution) phase(name string, agents []agentCall) error {
	phaseID := r.id("phase/" + name)
	if err := r.step(name+"/enter", func(ctx context.Context, repo *repository.Repository) error {
		return repo.UpdateFeatureRunPhase(ctx, r.runID, name)
	}); err != nil {
		return err
	}
	if err := r.step(name+"/start", func(ctx context.Context, repo *repository.Repository) error {
		_, err := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: phaseID, FeatureRunID: r.runID, Phase: name})
		return err
	}); err != nil {
		return err
	}
	for i, a := range agents {
		if err := r.invoke(fmt.Sprintf("%s/%s-%d", name, a.agent, i+1), phaseID, a); err != nil {
			return err
		}
	}
	if err := r.step(name+"/remember", func(ctx context.Context, repo *repository.Repository) error {
		return repo.UpdateFeatureRunMemories(ctx, r.runID, []any{
			map[string]any{"phase": name, "lesson": "keep the " + name + " notes short"},
			"the repository uses Go modules",
		})
	}); err != nil {
		return err
	}
	switch name {
	case "plan":
		if err := r.askAndAnswer(); err != nil {
			return err
		}
	case "review":
		if err := r.askAndTimeOut(); err != nil {
			return err
		}
	}
	return r.step(name+"/pass", func(ctx context.Context, repo *repository.Repository) error {
		return repo.PassPhaseResult(ctx, phaseID, map[string]any{"phase": name, "summary": name + " done"})
	})
}

// invoke records one agent invocation: its start, then its result.
func (r *execution) invoke(step string, phaseID uuid.UUID, a agentCall) error {
	id := r.id(step)
	if err := r.step(step+"/start", func(ctx context.Context, repo *repository.Repository) error {
		_, err := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{
			ID: id, FeatureRunID: r.runID, PhaseResultID: &phaseID, Agent: a.agent, Model: a.model,
			Input: map[string]any{"task": "work on " + r.eventID},
		})
		return err
	}); err != nil {
		return err
	}
	price := pricesNanoUSD[a.model]
	result := repository.InvocationResult{
		Steps: []any{
			map[string]any{"type": "thought", "text": "read the relevant files"},
			map[string]any{"type": "action", "text": "run the tools"},
		},
		ToolCalls: []any{
			map[string]any{"tool": "read_file", "args": map[string]any{"path": "main.go"}},
			map[string]any{"tool": "bash", "args": map[string]any{"cmd": "go test ./..."}},
		},
		Output:       map[string]any{"ok": a.fails == ""},
		InputTokens:  a.input,
		OutputTokens: a.output,
		CostNanoUSD:  a.input*price[0] + a.output*price[1],
	}
	return r.step(step+"/finish", func(ctx context.Context, repo *repository.Repository) error {
		if a.fails != "" {
			return repo.FailAgentInvocation(ctx, id, result, a.fails)
		}
		return repo.CompleteAgentInvocation(ctx, id, result)
	})
}

// askAndAnswer asks a person to approve the plan; they answer in time.
func (r *execution) askAndAnswer() error {
	id := "approve-plan-" + r.runID.String()[:8]
	if err := r.step("plan/ask", func(ctx context.Context, repo *repository.Repository) error {
		return repo.CreateCTAEvent(ctx, repository.NewCTAEvent{
			ID: id, FeatureRunID: r.runID, Kind: "approval",
			RequestData: map[string]any{"question": "Approve the plan?"}, ExpiresAt: r.start.Add(time.Hour),
		})
	}); err != nil {
		return err
	}
	return r.step("plan/answer", func(ctx context.Context, repo *repository.Repository) error {
		return repo.CompleteCTAEvent(ctx, id, map[string]any{"approved": true, "by": "alice"})
	})
}

// askAndTimeOut asks a person to confirm the deploy; nobody answers, so a
// sweeper times the request out and the workflow's own timeout, a moment
// later, finds it already timed out.
func (r *execution) askAndTimeOut() error {
	id := "confirm-deploy-" + r.runID.String()[:8]
	deadline := r.start.Add(30 * time.Minute)
	if err := r.step("review/ask", func(ctx context.Context, repo *repository.Repository) error {
		return repo.CreateCTAEvent(ctx, repository.NewCTAEvent{
			ID: id, FeatureRunID: r.runID, Kind: "confirmation",
			RequestData: map[string]any{"question": "Deploy now?"}, ExpiresAt: deadline,
		})
	}); err != nil {
		return err
	}
	if err := r.step("review/sweep", func(ctx context.Context, repo *repository.Repository) error {
		// Thirty-one simulated minutes later.
		_, err := repo.ExpireCTAEvents(ctx, deadline.Add(time.Minute), 100)
		return err
	}); err != nil {
		return err
	}
	return r.step("review/timeout", func(ctx context.Context, repo *repository.Repository) error {
		err := repo.TimeoutCTAEvent(ctx, id)
		if errors.Is(err, repository.ErrInvalidTransition) {
			// The person answered just before the timeout: their answer
			// stands, and the workflow should read it instead.
			return nil
		}
		return err
	})
}
