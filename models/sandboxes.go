package models

import (
	"time"

	"github.com/google/uuid"
	"gorm.io/datatypes"
)

// Sandbox is an execution environment the pipeline started for a run. Its ID
// is the one the sandbox provider assigned.
type Sandbox struct {
	ID           string      `gorm:"size:255;primaryKey"`
	FeatureRunID uuid.UUID   `gorm:"type:uuid;not null;index:idx_sandboxes_run_created,priority:1"`
	FeatureRun   *FeatureRun `gorm:"constraint:OnDelete:CASCADE" json:"-"`
	// Live sandboxes are indexed on their own: the leak finder scans them.
	Status SandboxStatus `gorm:"size:16;not null;index:idx_sandboxes_live,where:status <> 'stopped' AND status <> 'failed'"`
	// Provider names who hosts the sandbox, such as "e2b" or "docker".
	Provider string `gorm:"size:255;not null"`
	// Metadata is free JSON supplied by the caller at creation.
	Metadata  datatypes.JSON
	CreatedAt time.Time `gorm:"not null;index:idx_sandboxes_run_created,priority:2"`
	UpdatedAt time.Time `gorm:"not null"`
	// StartedAt is when the sandbox first reached running.
	StartedAt *time.Time
	// StoppedAt is when the sandbox reached a terminal status.
	StoppedAt *time.Time

	// The fields below were added to a table already in use. They are
	// last, as an existing table gets new columns at its end, so that a new
	// table has its columns in the same order. Their columns are nullable
	// and have no default, which every database adds to a table in place:
	// rows written before the columns existed hold NULL.

	// Step is the workflow step of the row's last fenced move (see
	// repository.Repository.AtStep): NULL, read as nil, until one is made,
	// and counted as step 0 by the fence until then.
	Step *int64
}

// TableName returns the table of Sandbox rows.
func (Sandbox) TableName() string { return "sandboxes" }
