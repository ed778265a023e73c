package models

import (
	"time"

	"github.com/google/uuid"
	"gorm.io/datatypes"
)

// PhaseResult records one attempt at one phase of a run and what it produced.
type PhaseResult struct {
	// The unique index on (id, feature_run_id) is what lets an invocation's
	// foreign key name both, so that it cannot point at another run's phase.
	ID           uuid.UUID   `gorm:"type:uuid;primaryKey;uniqueIndex:idx_phase_results_id_run,priority:1"`
	FeatureRunID uuid.UUID   `gorm:"type:uuid;not null;index:idx_phase_results_run_created,priority:1;uniqueIndex:idx_phase_results_id_run,priority:2"`
	FeatureRun   *FeatureRun `gorm:"constraint:OnDelete:CASCADE" json:"-"`
	Phase        string      `gorm:"size:255;not null"`
	Status       PhaseStatus `gorm:"size:16;not null"`
	// Output is the JSON the phase produced, set when it passed.
	Output datatypes.JSON
	// Error says why the phase failed, when it did and a reason was given.
	Error     *string
	CreatedAt time.Time `gorm:"not null;index:idx_phase_results_run_created,priority:2"`
	UpdatedAt time.Time `gorm:"not null"`
	// FinishedAt is when the phase reached a terminal status.
	FinishedAt *time.Time
}

// TableName returns the table of PhaseResult rows.
func (PhaseResult) TableName() string { return "phase_results" }
