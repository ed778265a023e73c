package repository

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
)

// GetFeatureRun returns the feature run runID, or [ErrNotFound].
func (r *Repository) GetFeatureRun(ctx context.Context, runID uuid.UUID) (*models.FeatureRun, error) {
	return getByUUID[models.FeatureRun](ctx, r, "feature run", runID)
}

// GetSandbox returns the sandbox sandboxID, or [ErrNotFound].
func (r *Repository) GetSandbox(ctx context.Context, sandboxID string) (*models.Sandbox, error) {
	if err := checkName("sandboxID", sandboxID); err != nil {
		return nil, fmt.Errorf("get sandbox %q: %w", sandboxID, err)
	}
	return get[models.Sandbox](ctx, r, "sandbox", sandboxID)
}

// GetPhaseResult returns the phase result phaseResultID, or [ErrNotFound].
func (r *Repository) GetPhaseResult(ctx context.Context, phaseResultID uuid.UUID) (*models.PhaseResult, error) {
	return getByUUID[models.PhaseResult](ctx, r, "phase result", phaseResultID)
}

// GetAgentInvocation returns the agent invocation invocationID, or
// [ErrNotFound].
func (r *Repository) GetAgentInvocation(ctx context.Context, invocationID uuid.UUID) (*models.AgentInvocation, error) {
	return getByUUID[models.AgentInvocation](ctx, r, "agent invocation", invocationID)
}

// GetCTAEvent returns the CTA event ctaID, or [ErrNotFound].
func (r *Repository) GetCTAEvent(ctx context.Context, ctaID string) (*models.CTAEvent, error) {
	if err := checkName("ctaID", ctaID); err != nil {
		return nil, fmt.Errorf("get CTA event %q: %w", ctaID, err)
	}
	return get[models.CTAEvent](ctx, r, "CTA event", ctaID)
}

func getByUUID[T tabler](ctx context.Context, r *Repository, what string, id uuid.UUID) (*T, error) {
	if err := checkID("id", id); err != nil {
		return nil, fmt.Errorf("get %s %s: %w", what, id, err)
	}
	return get[T](ctx, r, what, id)
}

func get[T tabler](ctx context.Context, r *Repository, what string, id any) (*T, error) {
	if err := r.start(ctx); err != nil {
		return nil, fmt.Errorf("get %s %v: %w", what, id, err)
	}
	var rows []T
	if err := r.translate(ctx, r.from(r.db.WithContext(ctx), *new(T)).Where("id = ?", id).Limit(1).Find(&rows).Error); err != nil {
		return nil, fmt.Errorf("get %s %v: %w", what, id, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("get %s %v: %w", what, id, ErrNotFound)
	}
	inUTC(&rows)
	return &rows[0], nil
}
