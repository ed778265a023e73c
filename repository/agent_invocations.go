package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
)

// NewAgentInvocation is the input of CreateAgentInvocation.
type NewAgentInvocation struct {
	// ID identifies the invocation; derive it with StableID. Zero gets a
	// fresh UUIDv7.
	ID uuid.UUID
	// FeatureRunID is the run the invocation belongs to. Required; the run
	// must exist.
	FeatureRunID uuid.UUID
	// PhaseResultID is the phase the invocation ran in, if any; it must be a
	// phase of the same run.
	PhaseResultID *uuid.UUID
	// Agent names the agent, such as "planner". Required.
	Agent string
	// Model names the AI model the agent runs on.
	Model string
	// Input is the request given to the agent, stored as JSON.
	Input any
}

// InvocationResult is what an agent invocation produced, recorded when it
// ends.
type InvocationResult struct {
	// Steps and ToolCalls are stored as JSON arrays; nil stores [].
	Steps     []any
	ToolCalls []any
	// Output is the agent's final answer, stored as JSON.
	Output any
	// InputTokens and OutputTokens count the tokens used; not negative.
	InputTokens, OutputTokens int64
	// CostNanoUSD is the cost in billionths of a US dollar; not negative.
	CostNanoUSD int64
}

// CreateAgentInvocation inserts a running agent invocation and returns its
// ID. When an invocation with in.ID exists it returns in.ID and nil and keeps
// the existing row as it is. A missing run, or a phase result missing from
// the run, returns ErrNotFound.
func (r *Repository) CreateAgentInvocation(ctx context.Context, in NewAgentInvocation) (uuid.UUID, error) {
	const op = "create agent invocation: %w"
	if err := firstErr(
		checkID("NewAgentInvocation.FeatureRunID", in.FeatureRunID),
		checkName("NewAgentInvocation.Agent", in.Agent),
		checkText("NewAgentInvocation.Model", in.Model, MaxNameBytes),
	); err != nil {
		return uuid.Nil, fmt.Errorf(op, err)
	}
	if in.PhaseResultID != nil {
		if err := checkID("NewAgentInvocation.PhaseResultID", *in.PhaseResultID); err != nil {
			return uuid.Nil, fmt.Errorf(op, err)
		}
	}
	input, err := encodeJSON("NewAgentInvocation.Input", in.Input)
	if err != nil {
		return uuid.Nil, fmt.Errorf(op, err)
	}
	if err := r.start(ctx); err != nil {
		return uuid.Nil, fmt.Errorf(op, err)
	}
	id, err := idOrNew(in.ID)
	if err != nil {
		return uuid.Nil, fmt.Errorf(op, err)
	}
	var phaseResultID *string
	if in.PhaseResultID != nil {
		s := in.PhaseResultID.String()
		phaseResultID = &s
	}
	t := r.now()
	err = r.create(ctx, r.inserts.agentInvocation, id.String(), in.FeatureRunID.String(), phaseResultID, in.Agent, in.Model,
		string(models.InvocationRunning), r.dialect.json(input), 0, 0, 0, t, t)
	if err != nil {
		var fk *foreignKeyError
		if errors.As(err, &fk) {
			err = r.missingParent(ctx, in, fk.constraint)
		}
		return uuid.Nil, fmt.Errorf("create agent invocation %s: %w", id, err)
	}
	return id, nil
}

// missingParent names the parent row whose absence failed an insert: by
// the violated constraint where the database names it. Elsewhere (SQLite)
// it reads whether the phase result is in the run; that database does not
// abort a transaction on a failed statement, and the read goes to the
// primary under read/write splitting.
func (r *Repository) missingParent(ctx context.Context, in NewAgentInvocation, constraint string) error {
	missingRun := fmt.Errorf("feature run %s: %w", in.FeatureRunID, ErrNotFound)
	if in.PhaseResultID == nil {
		return missingRun
	}
	missingPhase := fmt.Errorf("phase result %s of feature run %s: %w", *in.PhaseResultID, in.FeatureRunID, ErrNotFound)
	if constraint != "" {
		if constraint == r.inserts.fkPhaseResult {
			return missingPhase
		}
		return missingRun
	}
	found := false
	err := r.query(ctx, "phase_results", phaseInRunSQL, []any{in.PhaseResultID.String(), in.FeatureRunID.String()}, true,
		func(*sql.Rows) error { found = true; return nil })
	switch {
	case err != nil:
		return err
	case found:
		return missingRun
	}
	return missingPhase
}

// phaseInRunSQL finds a phase result of a run; its ? placeholders suit
// every database that does not name a violated constraint.
const phaseInRunSQL = `SELECT 1 FROM phase_results WHERE id = ? AND feature_run_id = ?`

var finishInvocation = newGuardedUpdate("agent_invocations",
	`UPDATE agent_invocations SET status = ?, steps = ?, tool_calls = ?, output = ?, input_tokens = ?, output_tokens = ?, cost_nano_usd = ?, error = ?, finished_at = ?, updated_at = ? WHERE status = 'running' AND id = ?`,
	"status")

// CompleteAgentInvocation moves a running invocation to completed and records
// its result. Completing a completed invocation changes nothing and keeps the
// first result; completing a failed one returns ErrInvalidTransition.
func (r *Repository) CompleteAgentInvocation(ctx context.Context, invocationID uuid.UUID, result InvocationResult) error {
	return r.finishInvocation(ctx, "complete agent invocation %s: %w", invocationID, models.InvocationCompleted, result, "")
}

// FailAgentInvocation moves a running invocation to failed and records what
// it did before it failed and why it failed. Failing a failed invocation
// changes nothing; failing a completed one returns ErrInvalidTransition.
func (r *Repository) FailAgentInvocation(ctx context.Context, invocationID uuid.UUID, result InvocationResult, message string) error {
	return r.finishInvocation(ctx, "fail agent invocation %s: %w", invocationID, models.InvocationFailed, result, message)
}

func (r *Repository) finishInvocation(ctx context.Context, op string, id uuid.UUID, to models.InvocationStatus, res InvocationResult, message string) error {
	if err := firstErr(
		checkID("invocationID", id),
		checkCount("InvocationResult.InputTokens", res.InputTokens),
		checkCount("InvocationResult.OutputTokens", res.OutputTokens),
		checkCount("InvocationResult.CostNanoUSD", res.CostNanoUSD),
		checkText("message", message, MaxMessageBytes),
	); err != nil {
		return fmt.Errorf(op, id, err)
	}
	steps, err := encodeArray("InvocationResult.Steps", res.Steps)
	if err != nil {
		return fmt.Errorf(op, id, err)
	}
	toolCalls, err := encodeArray("InvocationResult.ToolCalls", res.ToolCalls)
	if err != nil {
		return fmt.Errorf(op, id, err)
	}
	output, err := encodeJSON("InvocationResult.Output", res.Output)
	if err != nil {
		return fmt.Errorf(op, id, err)
	}
	if err := r.start(ctx); err != nil {
		return fmt.Errorf(op, id, err)
	}
	t := r.now()
	err = r.transition(ctx, finishInvocation.rendered[r.dialect], []any{string(to), r.dialect.json(steps), r.dialect.json(toolCalls), r.dialect.json(output),
		res.InputTokens, res.OutputTokens, res.CostNanoUSD, nullString(message), t, t, id.String()},
		judgeStatus("agent_invocations", id.String(), string(to), string(models.InvocationRunning)))
	return wrapf(op, id, err)
}
