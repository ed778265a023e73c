package models

import (
	"time"

	"github.com/google/uuid"
	"gorm.io/datatypes"
)

// AgentInvocation records one call of an AI agent: what it was asked, the
// steps and tool calls it made, the model and provider that answered, the
// tokens it used and what it cost, and the invocation that called it, if
// any. docs/telemetry.md maps each field to its OpenTelemetry GenAI
// attribute and its Langfuse field.
//
// The token counts follow the OpenTelemetry GenAI convention, in which the
// cache and reasoning counts are parts of the input and output counts, not
// additions to them: InputTokens includes CacheReadInputTokens and
// CacheWriteInputTokens, and OutputTokens includes ReasoningOutputTokens.
// Some providers report otherwise (Anthropic's input_tokens leaves the
// cached tokens out, Gemini's candidates count leaves the thinking tokens
// out); add them in before recording.
type AgentInvocation struct {
	// The unique index on (id, feature_run_id) is what lets a sub-agent
	// invocation's foreign key name both, so that its parent is in its run.
	ID           uuid.UUID   `gorm:"type:uuid;primaryKey;uniqueIndex:idx_agent_invocations_id_run,priority:1"`
	FeatureRunID uuid.UUID   `gorm:"type:uuid;not null;index:idx_agent_invocations_run_created,priority:1;uniqueIndex:idx_agent_invocations_id_run,priority:2"`
	FeatureRun   *FeatureRun `gorm:"constraint:OnDelete:CASCADE" json:"-"`
	// PhaseResultID links the invocation to the phase it ran in, if any: a
	// phase of the same run, which the foreign key on both columns ensures.
	PhaseResultID *uuid.UUID   `gorm:"type:uuid;index"`
	PhaseResult   *PhaseResult `gorm:"foreignKey:PhaseResultID,FeatureRunID;references:ID,FeatureRunID;constraint:OnDelete:CASCADE" json:"-"`
	Agent         string       `gorm:"size:255;not null"`
	// Model is the model the agent asked for (OpenTelemetry's
	// gen_ai.request.model); ResponseModel is the one that answered.
	Model  string           `gorm:"size:255;not null"`
	Status InvocationStatus `gorm:"size:16;not null"`
	// Input is the request the agent was given.
	Input datatypes.JSON
	// Steps and ToolCalls are JSON arrays recorded when the invocation ends.
	Steps     datatypes.JSON
	ToolCalls datatypes.JSON
	// Output is the agent's final answer.
	Output datatypes.JSON
	// InputTokens counts every input token, cached ones included.
	InputTokens int64 `gorm:"not null"`
	// OutputTokens counts every output token, reasoning ones included.
	OutputTokens int64 `gorm:"not null"`
	// CostNanoUSD is the cost in billionths of a US dollar: an integer, so
	// sums over many invocations are exact on every database.
	CostNanoUSD int64 `gorm:"column:cost_nano_usd;not null"`
	// Error says why the invocation failed, when it did.
	Error     *string
	CreatedAt time.Time `gorm:"not null;index:idx_agent_invocations_run_created,priority:2"`
	UpdatedAt time.Time `gorm:"not null"`
	// FinishedAt is when the invocation reached a terminal status.
	FinishedAt *time.Time

	// The fields below were added to a table already in use. They are
	// last, as an existing table gets new columns at its end, so that a new
	// table has its columns in the same order. Their columns are nullable
	// and have no default, which every database adds to a table in place:
	// a string not recorded is NULL (read as ""), and so are the counts of
	// rows written before the columns existed (read as 0).

	// Provider names who serves the model, such as "anthropic" or "openai"
	// (gen_ai.provider.name).
	Provider string `gorm:"size:255"`
	// ResponseModel is the model that answered, such as a dated version of
	// Model (gen_ai.response.model).
	ResponseModel string `gorm:"size:255"`
	// ProviderRequestID is the provider's ID of the response, such as
	// "msg_01…" or "chatcmpl-…" (gen_ai.response.id).
	ProviderRequestID string `gorm:"column:provider_request_id;size:255"`
	// CacheReadInputTokens counts the input tokens read from the provider's
	// prompt cache (gen_ai.usage.cache_read.input_tokens), and
	// CacheWriteInputTokens those written to it
	// (gen_ai.usage.cache_creation.input_tokens); both are part of
	// InputTokens.
	CacheReadInputTokens  int64
	CacheWriteInputTokens int64
	// ReasoningOutputTokens counts the output tokens spent reasoning
	// (gen_ai.usage.reasoning.output_tokens); they are part of OutputTokens.
	ReasoningOutputTokens int64
	// FinishReason is why the model stopped, such as "stop", "end_turn",
	// "length" or "tool_calls" (the first of gen_ai.response.finish_reasons).
	FinishReason string `gorm:"size:255"`
	// StartedAt is when the call started, as the caller measured it;
	// CreatedAt is when it was recorded.
	StartedAt *time.Time
	// TimeToFirstTokenMicros is how long the first token of a streamed
	// response took to arrive, in microseconds (what OpenTelemetry's metric
	// gen_ai.server.time_to_first_token measures, in seconds).
	TimeToFirstTokenMicros *int64
	// ParentInvocationID is the invocation that called this one, for a
	// sub-agent: an invocation of the same run.
	//
	// On PostgreSQL a foreign key on both columns ensures it, and deleting
	// the parent deletes its sub-agent invocations, as for a phase result.
	// SQLite cannot add a foreign key to an existing table without
	// rebuilding the table, which loses rows (see package migrate), so
	// there triggers ensure it: a write naming a parent that is not an
	// invocation of the run fails as a foreign key would, and deleting the
	// parent makes its sub-agent invocations top-level (ParentInvocationID
	// NULL). Deleting a run deletes all its invocations on both.
	ParentInvocationID *uuid.UUID `gorm:"type:uuid;index"`
	// ParentInvocation's foreign key is created by package migrate itself,
	// and on PostgreSQL only (see ParentInvocationID): GORM would create it
	// before the unique index it refers to.
	ParentInvocation *AgentInvocation `gorm:"-:migration;foreignKey:ParentInvocationID,FeatureRunID;references:ID,FeatureRunID;constraint:OnDelete:CASCADE" json:"-"`
}

// TableName returns the table of AgentInvocation rows.
func (AgentInvocation) TableName() string { return "agent_invocations" }
