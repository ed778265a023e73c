package repository

import (
	"context"
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
	t := now()
	var phaseResultID *string
	if in.PhaseResultID != nil {
		s := in.PhaseResultID.String()
		phaseResultID = &s
	}
	row := agentInvocationRow{ID: id.String(), FeatureRunID: in.FeatureRunID.String(), PhaseResultID: phaseResultID, AgentInvocation: models.AgentInvocation{
		Agent:     in.Agent,
		Model:     in.Model,
		Status:    models.InvocationRunning,
		CreatedAt: t,
		UpdatedAt: t,
	}, Input: input}
	if err := r.create(ctx, &row); err != nil {
		if errors.Is(err, errForeignKey) {
			err = r.missingParent(ctx, in)
		}
		return uuid.Nil, fmt.Errorf("create agent invocation %s: %w", id, err)
	}
	return id, nil
}

// missingParent names the parent row whose absence failed an insert. It runs
// only after the insert failed, so the happy path stays one statement.
func (r *Repository) missingParent(ctx context.Context, in NewAgentInvocation) error {
	if in.PhaseResultID != nil {
		var found []int
		if err := r.scan(ctx, &found, `SELECT 1 FROM phase_results WHERE id = ? AND feature_run_id = ?`, *in.PhaseResultID, in.FeatureRunID); err != nil {
			return err
		}
		if len(found) == 0 {
			return fmt.Errorf("phase result %s of feature run %s: %w", *in.PhaseResultID, in.FeatureRunID, ErrNotFound)
		}
	}
	return fmt.Errorf("feature run %s: %w", in.FeatureRunID, ErrNotFound)
}

var finishInvocationSQL = newStatement(`UPDATE agent_invocations SET status = ?, steps = ?, tool_calls = ?, output = ?, input_tokens = ?, output_tokens = ?, cost_nano_usd = ?, error = ?, finished_at = ?, updated_at = ? WHERE id = ? AND status = 'running'`)

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
	t := now()
	err = r.transition(ctx, "agent_invocations", id, string(to), r.dialect.sql(finishInvocationSQL),
		string(to), r.dialect.json(steps), r.dialect.json(toolCalls), r.dialect.json(output),
		res.InputTokens, res.OutputTokens, res.CostNanoUSD, nullString(message), t, t, id.String())
	return wrapf(op, id, err)
}
