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
	ID uuid.UUID `gorm:"type:uuid;primaryKey;index:idx_feature_runs_status_created,priority:3;index:idx_feature_runs_created,priority:2"`
	// Phase names the pipeline phase the run is in, such as "plan".
	Phase  string    `gorm:"size:255;not null"`
	Status RunStatus `gorm:"size:16;not null;index:idx_feature_runs_status_created,priority:1"`
	// Memories is a JSON array of distinct values the agents learned during
	// the run, in order of first appearance.
	Memories datatypes.JSON `gorm:"not null"`
	// Metadata is free JSON supplied by the caller at creation.
	Metadata datatypes.JSON
	// Error says why the run failed, when it did and a reason was given.
	Error     *string
	CreatedAt time.Time `gorm:"not null;index:idx_feature_runs_status_created,priority:2;index:idx_feature_runs_created,priority:1"`
	UpdatedAt time.Time `gorm:"not null"`
	// CompletedAt is when the run reached a terminal status.
	CompletedAt *time.Time
}

// TableName returns the table of FeatureRun rows.
func (FeatureRun) TableName() string { return "feature_runs" }
