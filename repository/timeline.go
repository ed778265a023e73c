package repository

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/models"
)

// Timeline is everything recorded about one feature run, each list in the
// order it happened (creation time, then ID).
type Timeline struct {
	Run models.FeatureRun
	// Phases are the run's phase results, each with its agent invocations.
	Phases []PhaseTimeline
	// Unphased are the invocations that belong to no phase.
	Unphased  []models.AgentInvocation
	Sandboxes []models.Sandbox
	CTAEvents []models.CTAEvent
}

// PhaseTimeline is a phase result with the agent invocations that ran in it.
type PhaseTimeline struct {
	models.PhaseResult
	Invocations []models.AgentInvocation
}

// RunTimeline returns the run runID with all its children, or ErrNotFound.
// It costs five queries whatever the run's size, one per table, read in one
// transaction so that they agree with each other.
func (r *Repository) RunTimeline(ctx context.Context, runID uuid.UUID) (*Timeline, error) {
	const op = "run timeline %s: %w"
	if err := checkID("runID", runID); err != nil {
		return nil, fmt.Errorf(op, runID, err)
	}
	if err := r.start(ctx); err != nil {
		return nil, fmt.Errorf(op, runID, err)
	}
	var (
		tl          Timeline
		phases      []models.PhaseResult
		invocations []models.AgentInvocation
		runs        []models.FeatureRun
	)
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Where("id = ?", runID).Limit(1).Find(&runs).Error; err != nil || len(runs) == 0 {
			return err
		}
		for _, dest := range []any{&phases, &invocations, &tl.Sandboxes, &tl.CTAEvents} {
			if err := tx.Where("feature_run_id = ?", runID).Order("created_at, id").Find(dest).Error; err != nil {
				return err
			}
		}
		return nil
	}, r.dialect.snapshot)
	if err != nil {
		return nil, fmt.Errorf(op, runID, r.translate(ctx, err))
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf(op, runID, ErrNotFound)
	}
	for _, rows := range []any{&runs, &phases, &invocations, &tl.Sandboxes, &tl.CTAEvents} {
		inUTC(rows)
	}
	tl.Run = runs[0]
	tl.Phases = make([]PhaseTimeline, len(phases))
	byPhase := make(map[uuid.UUID]*PhaseTimeline, len(phases))
	for i, p := range phases {
		tl.Phases[i].PhaseResult = p
		byPhase[p.ID] = &tl.Phases[i]
	}
	for _, inv := range invocations {
		if inv.PhaseResultID != nil {
			if p, ok := byPhase[*inv.PhaseResultID]; ok {
				p.Invocations = append(p.Invocations, inv)
				continue
			}
		}
		tl.Unphased = append(tl.Unphased, inv)
	}
	return &tl, nil
}
