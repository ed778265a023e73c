package models

import (
	"time"

	"github.com/google/uuid"
	"gorm.io/datatypes"
)

// AgentInvocation records one call of an AI agent: what it was asked, the
// steps and tool calls it made, and what it cost.
type AgentInvocation struct {
	ID           uuid.UUID   `gorm:"type:uuid;primaryKey"`
	FeatureRunID uuid.UUID   `gorm:"type:uuid;not null;index:idx_agent_invocations_run_created,priority:1"`
	FeatureRun   *FeatureRun `gorm:"constraint:OnDelete:CASCADE" json:"-"`
	// PhaseResultID links the invocation to the phase it ran in, if any: a
	// phase of the same run, which the foreign key on both columns ensures.
	PhaseResultID *uuid.UUID       `gorm:"type:uuid;index"`
	PhaseResult   *PhaseResult     `gorm:"foreignKey:PhaseResultID,FeatureRunID;references:ID,FeatureRunID;constraint:OnDelete:CASCADE" json:"-"`
	Agent         string           `gorm:"size:255;not null"`
	Model         string           `gorm:"size:255;not null"`
	Status        InvocationStatus `gorm:"size:16;not null"`
	// Input is the request the agent was given.
	Input datatypes.JSON
	// Steps and ToolCalls are JSON arrays recorded when the invocation ends.
	Steps     datatypes.JSON
	ToolCalls datatypes.JSON
	// Output is the agent's final answer.
	Output       datatypes.JSON
	InputTokens  int64 `gorm:"not null"`
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
}

// TableName returns the table of AgentInvocation rows.
func (AgentInvocation) TableName() string { return "agent_invocations" }
