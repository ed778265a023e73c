package models

import (
	"time"

	"github.com/google/uuid"
	"gorm.io/datatypes"
)

// CTAEvent is a call to action: the pipeline asked a person for input and
// waits for the answer until ExpiresAt.
type CTAEvent struct {
	ID           string      `gorm:"size:255;primaryKey;index:idx_cta_events_status_expiry,priority:3"`
	FeatureRunID uuid.UUID   `gorm:"type:uuid;not null;index:idx_cta_events_run_created,priority:1"`
	FeatureRun   *FeatureRun `gorm:"constraint:OnDelete:CASCADE" json:"-"`
	// Kind names what is asked, such as "approval" or "clarification".
	Kind string `gorm:"size:255;not null"`
	// Events of each status are indexed by deadline, then ID, for
	// listings across runs.
	Status CTAStatus `gorm:"size:16;not null;index:idx_cta_events_status_expiry,priority:1"`
	// RequestData is what the person was shown.
	RequestData datatypes.JSON
	// ResponseData is the person's answer, set when the CTA completed.
	ResponseData datatypes.JSON
	// ExpiresAt is the deadline after which the CTA may time out; nil for none.
	// Pending events are indexed by deadline for the timeout sweeper.
	ExpiresAt *time.Time `gorm:"index:idx_cta_events_pending_expiry,where:status = 'pending';index:idx_cta_events_status_expiry,priority:2"`
	CreatedAt time.Time  `gorm:"not null;index:idx_cta_events_run_created,priority:2"`
	UpdatedAt time.Time  `gorm:"not null"`
	// ResolvedAt is when the CTA completed or timed out.
	ResolvedAt *time.Time
}

// TableName returns the table of CTAEvent rows.
func (CTAEvent) TableName() string { return "cta_events" }
