package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// workflowName is the name the feature-run workflow is registered under.
const workflowName = "feature-run"

// defaultStepTimeout is an attempt's StartToCloseTimeout when Input does
// not set one.
const defaultStepTimeout = 10 * time.Second

// Input is what starts a feature run: the event that asked for it. Temporal
// stores it with the workflow, so a worker that replays the workflow gets
// it back.
type Input struct {
	EventID string
	// StepTimeout is the StartToCloseTimeout of every attempt of every
	// activity: how long Temporal waits for an attempt before it retries
	// the activity, whether the attempt's worker died or the attempt is
	// still running. Zero means 10 s.
	StepTimeout time.Duration
}

// Step is an activity's place in the workflow, which the workflow passes
// to the activity with its arguments.
type Step struct {
	// Position is the step's position in the workflow: 1, 2, … The
	// activity makes its writes at it, with repo.AtStep(Position). It is
	// deterministic, as everything the workflow computes: a worker that
	// replays the workflow, and a reset of it, number the steps alike.
	Position int64
	// Name names the step in the trace.
	Name string
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

// FeatureRun is the workflow: the pipeline of examples/pipeline with each
// write to the database in an activity of its own. It returns the feature
// run's ID.
func FeatureRun(ctx workflow.Context, in Input) (string, error) {
	timeout := in.StepTimeout
	if timeout <= 0 {
		timeout = defaultStepTimeout
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: timeout,
		// Retry at once, and forever: every error of a step but a refused
		// move (below) is worth retrying, and retrying is safe.
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    100 * time.Millisecond,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Second,
		},
	})
	r := &execution{
		ctx:     ctx,
		eventID: in.EventID,
		runID:   repository.StableID(in.EventID, "run"),
		// workflow.Now is the time of the workflow task, which a replay
		// gets back: deadlines computed from it do not move when a worker
		// replays the workflow.
		start: workflow.Now(ctx).UTC(),
	}
	return r.runID.String(), r.execute()
}

// execution is one execution of the workflow function, which Temporal runs
// again from the top on every worker that replays the workflow; the
// activities that completed return their recorded results without running.
type execution struct {
	ctx     workflow.Context
	eventID string
	runID   uuid.UUID
	start   time.Time
	// steps counts the steps, which numbers them.
	steps int64
}

// acts names the activities for workflow.ExecuteActivity: only their
// names are taken from it, so it need not point anywhere.
var acts *Activities

// id derives the ID of a step's row from the triggering event.
func (r *execution) id(step string) uuid.UUID { return repository.StableID(r.eventID, step) }

// step runs the activity fn, as the step name at the next position, with
// args after the Step.
func (r *execution) step(name string, fn any, args ...any) error {
	r.steps++
	s := Step{Position: r.steps, Name: name}
	if err := workflow.ExecuteActivity(r.ctx, fn, append([]any{s}, args...)...).Get(r.ctx, nil); err != nil {
		return fmt.Errorf("step %d %s: %w", s.Position, name, err)
	}
	return nil
}

func (r *execution) execute() error {
	sandbox := "sbx-" + r.id("sandbox").String()[:8]
	if err := r.step("start", acts.CreateFeatureRun, repository.NewFeatureRun{ID: r.runID, Phase: "plan", Metadata: map[string]any{"event": r.eventID}}); err != nil {
		return err
	}
	if err := r.step("sandbox/create", acts.CreateSandbox, repository.NewSandbox{ID: sandbox, FeatureRunID: r.runID, Provider: "e2b"}); err != nil {
		return err
	}
	if err := r.step("sandbox/ready", acts.UpdateSandboxStatus, sandbox, models.SandboxRunning); err != nil {
		return err
	}
	for _, p := range phases {
		if err := r.phase(p.name, p.agents, sandbox); err != nil {
			return err
		}
	}
	if err := r.step("sandbox/stop", acts.UpdateSandboxStatus, sandbox, models.SandboxStopped); err != nil {
		return err
	}
	return r.step("finish", acts.CompleteFeatureRun, r.runID)
}

func (r *execution) phase(name string, agents []agentCall, sandbox string) error {
	phaseID := r.id("phase/" + name)
	if err := r.step(name+"/enter", acts.UpdateFeatureRunPhase, r.runID, name); err != nil {
		return err
	}
	if err := r.step(name+"/start", acts.CreatePhaseResult, repository.NewPhaseResult{ID: phaseID, FeatureRunID: r.runID, Phase: name}); err != nil {
		return err
	}
	for i, a := range agents {
		if err := r.invoke(fmt.Sprintf("%s/%s-%d", name, a.agent, i+1), phaseID, a); err != nil {
			return err
		}
	}
	if err := r.step(name+"/remember", acts.UpdateFeatureRunMemories, r.runID, []any{
		map[string]any{"phase": name, "lesson": "keep the " + name + " notes short"},
		"the repository uses Go modules",
	}); err != nil {
		return err
	}
	switch name {
	case "plan":
		if err := r.askAndAnswer(sandbox); err != nil {
			return err
		}
	case "review":
		if err := r.askAndTimeOut(); err != nil {
			return err
		}
	}
	return r.step(name+"/pass", acts.PassPhaseResult, phaseID, map[string]any{"phase": name, "summary": name + " done"})
}

// invoke records one agent invocation: its start, then its result.
func (r *execution) invoke(step string, phaseID uuid.UUID, a agentCall) error {
	id := r.id(step)
	if err := r.step(step+"/start", acts.CreateAgentInvocation, repository.NewAgentInvocation{
		ID: id, FeatureRunID: r.runID, PhaseResultID: &phaseID, Agent: a.agent, Model: a.model,
		Input: map[string]any{"task": "work on " + r.eventID},
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
	return r.step(step+"/finish", acts.FinishAgentInvocation, id, result, a.fails)
}

// askAndAnswer asks a person to approve the plan, pausing the sandbox
// while nobody needs it, and resumes it once they answered, in time.
func (r *execution) askAndAnswer(sandbox string) error {
	id := "approve-plan-" + r.runID.String()[:8]
	if err := r.step("plan/ask", acts.CreateCTAEvent, repository.NewCTAEvent{
		ID: id, FeatureRunID: r.runID, Kind: "approval",
		RequestData: map[string]any{"question": "Approve the plan?"}, ExpiresAt: r.start.Add(time.Hour),
	}); err != nil {
		return err
	}
	if err := r.step("sandbox/pause", acts.UpdateSandboxStatus, sandbox, models.SandboxPaused); err != nil {
		return err
	}
	if err := r.step("plan/answer", acts.CompleteCTAEvent, id, map[string]any{"approved": true, "by": "alice"}); err != nil {
		return err
	}
	return r.step("sandbox/resume", acts.UpdateSandboxStatus, sandbox, models.SandboxRunning)
}

// askAndTimeOut asks a person to confirm the deploy; nobody answers, so a
// sweeper times the request out and the workflow's own timeout, a moment
// later, finds it already timed out.
func (r *execution) askAndTimeOut() error {
	id := "confirm-deploy-" + r.runID.String()[:8]
	deadline := r.start.Add(30 * time.Minute)
	if err := r.step("review/ask", acts.CreateCTAEvent, repository.NewCTAEvent{
		ID: id, FeatureRunID: r.runID, Kind: "confirmation",
		RequestData: map[string]any{"question": "Deploy now?"}, ExpiresAt: deadline,
	}); err != nil {
		return err
	}
	// Thirty-one simulated minutes later.
	if err := r.step("review/sweep", acts.ExpireCTAEvents, deadline.Add(time.Minute)); err != nil {
		return err
	}
	return r.step("review/timeout", acts.TimeoutCTAEvent, id)
}

// Activities are the workflow's steps: each makes one write to the
// pipeline's tables, at its step's position.
type Activities struct {
	// Repo is the pipeline's database.
	Repo *repository.Repository
	// Unfenced makes every write through Repo itself rather than
	// Repo.AtStep(position): a zombie attempt can then take a run's phase
	// or a sandbox's status back. The tests use it to show the damage.
	Unfenced bool
	// Work is the longest a step works before its write, and again after
	// it, as an agent's call would: a worker dying then has written, or
	// not, without Temporal having recorded the activity's completion.
	Work time.Duration
	// FailOnce makes the first attempt of every step fail after its
	// write, so that Temporal retries it.
	FailOnce bool
	// Trace, if set, gets a line when an attempt begins and when its write
	// returned: "step 7 sandbox/pause attempt 1 begin".
	Trace io.Writer
	// BeforeWrite, if set, is called before each attempt's write, with the
	// attempt's context, and returns the context the write runs under.
	// The tests make zombies with it.
	BeforeWrite func(ctx context.Context, s Step) context.Context
	// AfterWrite, if set, is called after each attempt's write with its
	// error.
	AfterWrite func(ctx context.Context, s Step, err error)

	mu sync.Mutex // serializes Trace
}

// tracef writes a line to the trace.
func (a *Activities) tracef(format string, args ...any) {
	if a.Trace == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	fmt.Fprintf(a.Trace, format+"\n", args...)
}

// pause works for a random time up to a.Work.
func (a *Activities) pause() {
	if a.Work > 0 {
		time.Sleep(rand.N(a.Work))
	}
}

// write runs one attempt of step s, whose write is fn.
func (a *Activities) write(ctx context.Context, s Step, fn func(context.Context, *repository.Repository) error) error {
	attempt := activity.GetInfo(ctx).Attempt
	a.tracef("step %d %s attempt %d begin", s.Position, s.Name, attempt)
	a.pause()
	repo := a.Repo
	if !a.Unfenced {
		repo = repo.AtStep(s.Position)
	}
	wctx := ctx
	if a.BeforeWrite != nil {
		wctx = a.BeforeWrite(ctx, s)
	}
	err := fn(wctx, repo)
	if err == nil {
		a.tracef("step %d %s attempt %d wrote", s.Position, s.Name, attempt)
	}
	if a.AfterWrite != nil {
		a.AfterWrite(ctx, s, err)
	}
	if err != nil {
		if errors.Is(err, repository.ErrInvalidTransition) || errors.Is(err, repository.ErrInvalidInput) || errors.Is(err, repository.ErrNotFound) {
			// Refused for the state of a row, for its input, or for a row
			// that an earlier step should have made: retrying would be
			// refused again. Fail the workflow, to be looked at.
			return temporal.NewNonRetryableApplicationError(err.Error(), "refused", err)
		}
		return err
	}
	if a.FailOnce && attempt == 1 {
		return temporal.NewApplicationError("failing the first attempt after its write, on purpose", "fail-once")
	}
	a.pause()
	return nil
}

// CreateFeatureRun creates the run.
func (a *Activities) CreateFeatureRun(ctx context.Context, s Step, in repository.NewFeatureRun) error {
	return a.write(ctx, s, func(ctx context.Context, repo *repository.Repository) error {
		_, err := repo.CreateFeatureRun(ctx, in)
		return err
	})
}

// CreateSandbox records the sandbox the run works in.
func (a *Activities) CreateSandbox(ctx context.Context, s Step, in repository.NewSandbox) error {
	return a.write(ctx, s, func(ctx context.Context, repo *repository.Repository) error {
		return repo.CreateSandboxRecord(ctx, in)
	})
}

// UpdateSandboxStatus moves the sandbox: a fenced move.
func (a *Activities) UpdateSandboxStatus(ctx context.Context, s Step, id string, status models.SandboxStatus) error {
	return a.write(ctx, s, func(ctx context.Context, repo *repository.Repository) error {
		return repo.UpdateSandboxStatus(ctx, id, status)
	})
}

// UpdateFeatureRunPhase moves the run to a phase: a fenced move.
func (a *Activities) UpdateFeatureRunPhase(ctx context.Context, s Step, runID uuid.UUID, phase string) error {
	return a.write(ctx, s, func(ctx context.Context, repo *repository.Repository) error {
		return repo.UpdateFeatureRunPhase(ctx, runID, phase)
	})
}

// CreatePhaseResult records the start of a phase.
func (a *Activities) CreatePhaseResult(ctx context.Context, s Step, in repository.NewPhaseResult) error {
	return a.write(ctx, s, func(ctx context.Context, repo *repository.Repository) error {
		_, err := repo.CreatePhaseResult(ctx, in)
		return err
	})
}

// PassPhaseResult records that a phase passed.
func (a *Activities) PassPhaseResult(ctx context.Context, s Step, id uuid.UUID, output map[string]any) error {
	return a.write(ctx, s, func(ctx context.Context, repo *repository.Repository) error {
		return repo.PassPhaseResult(ctx, id, output)
	})
}

// CreateAgentInvocation records the start of an agent's invocation.
func (a *Activities) CreateAgentInvocation(ctx context.Context, s Step, in repository.NewAgentInvocation) error {
	return a.write(ctx, s, func(ctx context.Context, repo *repository.Repository) error {
		_, err := repo.CreateAgentInvocation(ctx, in)
		return err
	})
}

// FinishAgentInvocation records an invocation's result: completed, or
// failed with failure when it is not empty.
func (a *Activities) FinishAgentInvocation(ctx context.Context, s Step, id uuid.UUID, result repository.InvocationResult, failure string) error {
	return a.write(ctx, s, func(ctx context.Context, repo *repository.Repository) error {
		if failure != "" {
			return repo.FailAgentInvocation(ctx, id, result, failure)
		}
		return repo.CompleteAgentInvocation(ctx, id, result)
	})
}

// UpdateFeatureRunMemories appends memories to the run.
func (a *Activities) UpdateFeatureRunMemories(ctx context.Context, s Step, runID uuid.UUID, memories []any) error {
	return a.write(ctx, s, func(ctx context.Context, repo *repository.Repository) error {
		return repo.UpdateFeatureRunMemories(ctx, runID, memories)
	})
}

// CreateCTAEvent asks a person something.
func (a *Activities) CreateCTAEvent(ctx context.Context, s Step, in repository.NewCTAEvent) error {
	return a.write(ctx, s, func(ctx context.Context, repo *repository.Repository) error {
		return repo.CreateCTAEvent(ctx, in)
	})
}

// CompleteCTAEvent records a person's answer.
func (a *Activities) CompleteCTAEvent(ctx context.Context, s Step, id string, response map[string]any) error {
	return a.write(ctx, s, func(ctx context.Context, repo *repository.Repository) error {
		return repo.CompleteCTAEvent(ctx, id, response)
	})
}

// ExpireCTAEvents is the sweeper: it times out the CTA events expired at
// now.
func (a *Activities) ExpireCTAEvents(ctx context.Context, s Step, now time.Time) error {
	return a.write(ctx, s, func(ctx context.Context, repo *repository.Repository) error {
		_, err := repo.ExpireCTAEvents(ctx, now, 100)
		return err
	})
}

// TimeoutCTAEvent is the workflow's own timeout of a CTA event.
func (a *Activities) TimeoutCTAEvent(ctx context.Context, s Step, id string) error {
	return a.write(ctx, s, func(ctx context.Context, repo *repository.Repository) error {
		err := repo.TimeoutCTAEvent(ctx, id)
		if errors.Is(err, repository.ErrInvalidTransition) {
			// Timed out by the sweeper, or answered just before: the
			// answer stands, and the workflow should read it instead.
			return nil
		}
		return err
	})
}

// CompleteFeatureRun ends the run.
func (a *Activities) CompleteFeatureRun(ctx context.Context, s Step, runID uuid.UUID) error {
	return a.write(ctx, s, func(ctx context.Context, repo *repository.Repository) error {
		return repo.CompleteFeatureRun(ctx, runID)
	})
}
