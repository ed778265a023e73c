package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
)

// NewAgentInvocation is the input of [Repository.CreateAgentInvocation]:
// what is known when the call starts, in fields named as those of
// [models.AgentInvocation] they fill. PhaseResultID and ParentInvocationID
// are pointers because an invocation may belong to no phase and have no
// caller. docs/telemetry.md maps each field to its OpenTelemetry GenAI
// attribute and its Langfuse field.
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
	// ParentInvocationID is the invocation that called this one, for a
	// sub-agent; it must be an invocation of the same run, created before,
	// and not this one.
	ParentInvocationID *uuid.UUID
	// Agent names the agent, such as "planner". Required.
	Agent string
	// Model names the AI model the agent asks for.
	Model string
	// Provider names who serves the model, such as "anthropic" or "openai"
	// (OpenTelemetry's gen_ai.provider.name).
	Provider string
	// StartedAt is when the call started, if known; it is stored in UTC,
	// truncated to the microsecond databases keep. Nil leaves it unset.
	StartedAt *time.Time
	// Input is the request given to the agent, stored as JSON.
	Input any
}

// InvocationResult is what an agent invocation produced, recorded when it
// ends by [Repository.CompleteAgentInvocation] or
// [Repository.FailAgentInvocation]: everything known only then, in fields
// named as those of [models.AgentInvocation] they fill.
//
// Token counts follow the OpenTelemetry GenAI convention: InputTokens
// counts every input token, cached ones included, so CacheReadInputTokens
// and CacheWriteInputTokens are parts of it, and OutputTokens counts every
// output token, so ReasoningOutputTokens is part of it. Counts that break
// this are refused. OpenAI reports its usage this way; Anthropic's
// input_tokens leaves out the cache reads and writes, which must be added
// to it, and Gemini's candidates count leaves out the thinking tokens.
type InvocationResult struct {
	// Steps and ToolCalls are stored as JSON arrays; nil stores [].
	Steps     []any
	ToolCalls []any
	// Output is the agent's final answer, stored as JSON.
	Output any
	// InputTokens and OutputTokens count the tokens used; not negative.
	InputTokens, OutputTokens int64
	// CacheReadInputTokens and CacheWriteInputTokens count the input tokens
	// read from and written to the provider's prompt cache; not negative,
	// and together at most InputTokens.
	CacheReadInputTokens, CacheWriteInputTokens int64
	// ReasoningOutputTokens counts the output tokens spent reasoning; not
	// negative, and at most OutputTokens.
	ReasoningOutputTokens int64
	// CostNanoUSD is the cost in billionths of a US dollar; not negative.
	CostNanoUSD int64
	// ResponseModel names the model that answered, when the provider says
	// (gen_ai.response.model).
	ResponseModel string
	// ProviderRequestID is the provider's ID of the response
	// (gen_ai.response.id).
	ProviderRequestID string
	// FinishReason is why the model stopped, such as "stop" or "end_turn".
	FinishReason string
	// TimeToFirstTokenMicros is how long the first token of a streamed
	// response took, in microseconds; not negative. Nil leaves it unset.
	TimeToFirstTokenMicros *int64
}

// CreateAgentInvocation inserts a running agent invocation and returns its
// ID. When an invocation with in.ID exists it returns in.ID and nil and keeps
// the existing row as it is, whatever in holds.
//
// A missing run returns [ErrNotFound], and so do a phase result and a parent
// invocation that are not of the run, whether they are missing or of
// another run: to this run both are missing, and the database reports both
// as the same violated foreign key, which only another statement could
// tell apart. [ErrInvalidInput] is for arguments wrong whatever the database
// holds, refused before it is touched, such as an invocation naming itself
// as its parent.
func (r *Repository) CreateAgentInvocation(ctx context.Context, in NewAgentInvocation) (uuid.UUID, error) {
	const op = "create agent invocation: %w"
	if err := firstErr(
		checkID("NewAgentInvocation.FeatureRunID", in.FeatureRunID),
		checkOptionalID("NewAgentInvocation.PhaseResultID", in.PhaseResultID),
		checkOptionalID("NewAgentInvocation.ParentInvocationID", in.ParentInvocationID),
		checkName("NewAgentInvocation.Agent", in.Agent),
		checkText("NewAgentInvocation.Model", in.Model, MaxNameBytes),
		checkText("NewAgentInvocation.Provider", in.Provider, MaxNameBytes),
		checkOptionalTime("NewAgentInvocation.StartedAt", in.StartedAt),
	); err != nil {
		return uuid.Nil, fmt.Errorf(op, err)
	}
	if in.ParentInvocationID != nil && *in.ParentInvocationID == in.ID {
		return uuid.Nil, fmt.Errorf(op, &InputError{Field: "NewAgentInvocation.ParentInvocationID", Reason: "must not be the invocation's own ID"})
	}
	input, err := encodeJSON("NewAgentInvocation.Input", in.Input)
	if err != nil {
		return uuid.Nil, fmt.Errorf(op, err)
	}
	if err := r.startWrite(ctx); err != nil {
		return uuid.Nil, fmt.Errorf(op, err)
	}
	id, err := idOrNew(in.ID)
	if err != nil {
		return uuid.Nil, fmt.Errorf(op, err)
	}
	var startedAt *time.Time
	if in.StartedAt != nil {
		s := in.StartedAt.UTC().Truncate(time.Microsecond)
		startedAt = &s
	}
	t := r.now()
	err = r.create(ctx, r.inserts.agentInvocation, id.String(), in.FeatureRunID.String(), optionalID(in.PhaseResultID), optionalID(in.ParentInvocationID),
		in.Agent, in.Model, nullString(in.Provider), string(models.InvocationRunning), r.json(input), 0, 0, 0, 0, 0, 0, startedAt, t, t)
	if err != nil {
		var fk *foreignKeyError
		if errors.As(err, &fk) {
			err = r.missingParent(ctx, in, fk.constraint)
		}
		return uuid.Nil, fmt.Errorf("create agent invocation %s: %w", id, err)
	}
	return id, nil
}

// optionalID is the statement argument of an optional UUID: its text, or
// NULL.
func optionalID(id *uuid.UUID) *string {
	if id == nil {
		return nil
	}
	s := id.String()
	return &s
}

// missingParent names the parent row whose absence failed an insert: by
// the violated constraint where the database names it (PostgreSQL's
// foreign keys, the shard constraints a Citus coordinator relays, and the
// triggers in place of one on SQLite). Otherwise (SQLite's foreign keys,
// and a message PostgreSQL wrote in a language the dialect does not read)
// it reads whether the parent invocation and the phase result are in the
// run, on the primary under read/write splitting. It sends nothing where
// the failure aborted the transaction (PostgreSQL inside one), as the read
// would fail too and hide the cause: the error then names every parent
// that may be missing.
func (r *Repository) missingParent(ctx context.Context, in NewAgentInvocation, constraint string) error {
	missingRun := fmt.Errorf("feature run %s: %w", in.FeatureRunID, ErrNotFound)
	missingParentInvocation := func() error {
		return fmt.Errorf("parent invocation %s of feature run %s: %w", *in.ParentInvocationID, in.FeatureRunID, ErrNotFound)
	}
	if constraint != "" && constraint == r.inserts.fkParentInvocation && in.ParentInvocationID != nil {
		return missingParentInvocation()
	}
	if in.PhaseResultID == nil && (in.ParentInvocationID == nil || constraint != "") {
		return missingRun
	}
	missingPhase := func() error {
		return fmt.Errorf("phase result %s of feature run %s: %w", *in.PhaseResultID, in.FeatureRunID, ErrNotFound)
	}
	if constraint != "" {
		if constraint == r.inserts.fkPhaseResult {
			return missingPhase()
		}
		return missingRun
	}
	if r.dialect.AbortsTransaction && r.inTransaction() {
		parents := "feature run " + in.FeatureRunID.String()
		if in.PhaseResultID != nil {
			parents += ", phase result " + in.PhaseResultID.String()
		}
		if in.ParentInvocationID != nil {
			parents += ", parent invocation " + in.ParentInvocationID.String()
		}
		return fmt.Errorf("one of %s: %w", parents, ErrNotFound)
	}
	var phaseFound, parentFound bool
	// GORM's Raw writes each ? as the database's own placeholder.
	tx := r.db.WithContext(ctx).Raw(r.sql(parentsInRunSQL), optionalID(in.PhaseResultID), in.FeatureRunID.String(), optionalID(in.ParentInvocationID), in.FeatureRunID.String())
	err := r.translate(ctx, rows(tx, true, func(rows *sql.Rows) error { return rows.Scan(&phaseFound, &parentFound) }))
	switch {
	case err != nil:
		return err
	case in.ParentInvocationID != nil && !parentFound:
		return missingParentInvocation()
	case in.PhaseResultID != nil && !phaseFound:
		return missingPhase()
	}
	return missingRun
}

// parentsInRunSQL reads whether a phase result and an invocation are in a
// run; an ID that is NULL is found in none.
const parentsInRunSQL = `SELECT
	EXISTS (SELECT 1 FROM phase_results WHERE id = ? AND feature_run_id = ?),
	EXISTS (SELECT 1 FROM agent_invocations WHERE id = ? AND feature_run_id = ?)`

var finishInvocation = newGuardedUpdate("agent_invocations",
	"status = $1, steps = $2, tool_calls = $3, output = $4, input_tokens = $5, output_tokens = $6, "+
		"cache_read_input_tokens = $7, cache_write_input_tokens = $8, reasoning_output_tokens = $9, cost_nano_usd = $10, "+
		"response_model = $11, provider_request_id = $12, finish_reason = $13, time_to_first_token_micros = $14, "+
		"error = $15, finished_at = $16, updated_at = $17",
	"status = 'running'", "status = $1")

// CompleteAgentInvocation moves a running invocation to completed and records
// its result. Completing a completed invocation changes nothing and keeps the
// first result; completing a failed one returns [ErrInvalidTransition].
func (r *Repository) CompleteAgentInvocation(ctx context.Context, invocationID uuid.UUID, result InvocationResult) error {
	return r.finishInvocation(ctx, "complete agent invocation %s: %w", invocationID, models.InvocationCompleted, result, "")
}

// FailAgentInvocation moves a running invocation to failed and records what
// it did before it failed and why it failed. Failing a failed invocation
// changes nothing; failing a completed one returns [ErrInvalidTransition].
func (r *Repository) FailAgentInvocation(ctx context.Context, invocationID uuid.UUID, result InvocationResult, message string) error {
	return r.finishInvocation(ctx, "fail agent invocation %s: %w", invocationID, models.InvocationFailed, result, message)
}

func (r *Repository) finishInvocation(ctx context.Context, op string, id uuid.UUID, to models.InvocationStatus, res InvocationResult, message string) error {
	if err := firstErr(
		checkID("invocationID", id),
		checkCount("InvocationResult.InputTokens", res.InputTokens),
		checkCount("InvocationResult.OutputTokens", res.OutputTokens),
		checkCount("InvocationResult.CacheReadInputTokens", res.CacheReadInputTokens),
		checkCount("InvocationResult.CacheWriteInputTokens", res.CacheWriteInputTokens),
		checkCount("InvocationResult.ReasoningOutputTokens", res.ReasoningOutputTokens),
		checkTokenParts(res),
		checkCount("InvocationResult.CostNanoUSD", res.CostNanoUSD),
		checkText("InvocationResult.ResponseModel", res.ResponseModel, MaxNameBytes),
		checkText("InvocationResult.ProviderRequestID", res.ProviderRequestID, MaxNameBytes),
		checkText("InvocationResult.FinishReason", res.FinishReason, MaxNameBytes),
		checkOptionalCount("InvocationResult.TimeToFirstTokenMicros", res.TimeToFirstTokenMicros),
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
	if err := r.startWrite(ctx); err != nil {
		return fmt.Errorf(op, id, err)
	}
	t := r.now()
	err = r.transition(ctx, finishInvocation[r.dialect], []any{string(to), r.json(steps), r.json(toolCalls), r.json(output),
		res.InputTokens, res.OutputTokens, res.CacheReadInputTokens, res.CacheWriteInputTokens, res.ReasoningOutputTokens, res.CostNanoUSD,
		nullString(res.ResponseModel), nullString(res.ProviderRequestID), nullString(res.FinishReason), res.TimeToFirstTokenMicros,
		nullString(message), t, t, id.String()}, string(to), "")
	return wrapf(op, id, tooLarge(err, "InvocationResult", "", "InvocationResult.Steps", "InvocationResult.ToolCalls", "InvocationResult.Output",
		"", "", "", "", "", "", "InvocationResult.ResponseModel", "InvocationResult.ProviderRequestID", "InvocationResult.FinishReason", "", "message"))
}
