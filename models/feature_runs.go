package models

import (
	"time"

	"github.com/google/uuid"
	"gorm.io/datatypes"
)

// FeatureRun is one execution of the pipeline for one feature request. It
// owns every other row: deleting a run deletes its sandboxes, phase results,
// agent invocations and CTA events.
type FeatureRun struct {
	ID uuid.UUID `gorm:"type:uuid;primaryKey;index:idx_feature_runs_status_created,priority:3;index:idx_feature_runs_created,priority:2;index:idx_feature_runs_phase_status_created,priority:4"`
	// Phase names the pipeline phase the run is in, such as "plan". Runs
	// are indexed by phase, then status and creation, for listings and
	// counts of one phase.
	Phase  string    `gorm:"size:255;not null;index:idx_feature_runs_phase_status_created,priority:1"`
	Status RunStatus `gorm:"size:16;not null;index:idx_feature_runs_status_created,priority:1;index:idx_feature_runs_phase_status_created,priority:2"`
	// Memories is a JSON array of distinct values the agents learned during
	// the run, in order of first appearance.
	Memories datatypes.JSON `gorm:"not null"`
	// Metadata is free JSON supplied by the caller at creation.
	Metadata datatypes.JSON
	// Error says why the run failed, when it did and a reason was given.
	Error     *string
	CreatedAt time.Time `gorm:"not null;index:idx_feature_runs_status_created,priority:2;index:idx_feature_runs_created,priority:1;index:idx_feature_runs_phase_status_created,priority:3"`
	UpdatedAt time.Time `gorm:"not null"`
	// CompletedAt is when the run reached a terminal status.
	CompletedAt *time.Time

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

// TableName returns the table of FeatureRun rows.
func (FeatureRun) TableName() string { return "feature_runs" }
