package repository

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
)

// NewPhaseResult is the input of CreatePhaseResult.
type NewPhaseResult struct {
	// ID identifies the result; derive it with StableID (for example from the
	// run ID, the phase and the attempt). Zero gets a fresh UUIDv7.
	ID uuid.UUID
	// FeatureRunID is the run the phase belongs to. Required; the run must
	// exist.
	FeatureRunID uuid.UUID
	// Phase names the phase. Required.
	Phase string
}

// CreatePhaseResult inserts a running phase result and returns its ID. When
// a result with in.ID exists it returns in.ID and nil and keeps the existing
// row as it is. A missing run returns ErrNotFound.
func (r *Repository) CreatePhaseResult(ctx context.Context, in NewPhaseResult) (uuid.UUID, error) {
	const op = "create phase result: %w"
	if err := firstErr(
		checkID("NewPhaseResult.FeatureRunID", in.FeatureRunID),
		checkName("NewPhaseResult.Phase", in.Phase),
	); err != nil {
		return uuid.Nil, fmt.Errorf(op, err)
	}
	if err := r.start(ctx); err != nil {
		return uuid.Nil, fmt.Errorf(op, err)
	}
	id, err := idOrNew(in.ID)
	if err != nil {
		return uuid.Nil, fmt.Errorf(op, err)
	}
	t := now()
	row := phaseResultRow{ID: id.String(), FeatureRunID: in.FeatureRunID.String(), PhaseResult: models.PhaseResult{
		Phase:     in.Phase,
		Status:    models.PhaseRunning,
		CreatedAt: t,
		UpdatedAt: t,
	}}
	if err := r.create(ctx, &row); err != nil {
		if errors.Is(err, errForeignKey) {
			err = fmt.Errorf("feature run %s: %w", in.FeatureRunID, ErrNotFound)
		}
		return uuid.Nil, fmt.Errorf("create phase result %s: %w", id, err)
	}
	return id, nil
}

var finishPhaseSQL = newStatement(`UPDATE phase_results SET status = ?, output = ?, error = ?, finished_at = ?, updated_at = ? WHERE id = ? AND status = 'running'`)

// PassPhaseResult moves a running phase result to passed and stores output
// as its JSON output. Passing a passed result changes nothing and keeps the
// first output; passing a failed one returns ErrInvalidTransition.
func (r *Repository) PassPhaseResult(ctx context.Context, phaseResultID uuid.UUID, output any) error {
	const op = "pass phase result %s: %w"
	out, err := encodeJSON("output", output)
	if err != nil {
		return fmt.Errorf(op, phaseResultID, err)
	}
	return r.finishPhase(ctx, op, phaseResultID, models.PhasePassed, out, "")
}

// FailPhaseResult moves a running phase result to failed. Failing a failed
// result changes nothing; failing a passed one returns ErrInvalidTransition.
func (r *Repository) FailPhaseResult(ctx context.Context, phaseResultID uuid.UUID) error {
	return r.finishPhase(ctx, "fail phase result %s: %w", phaseResultID, models.PhaseFailed, nil, "")
}

// FailPhaseResultWithError is FailPhaseResult that also records why the
// phase failed. A replay keeps the first message.
func (r *Repository) FailPhaseResultWithError(ctx context.Context, phaseResultID uuid.UUID, message string) error {
	return r.finishPhase(ctx, "fail phase result %s: %w", phaseResultID, models.PhaseFailed, nil, message)
}

func (r *Repository) finishPhase(ctx context.Context, op string, id uuid.UUID, to models.PhaseStatus, output jsonValue, message string) error {
	if err := checkID("phaseResultID", id); err != nil {
		return fmt.Errorf(op, id, err)
	}
	if err := checkText("message", message, MaxMessageBytes); err != nil {
		return fmt.Errorf(op, id, err)
	}
	if err := r.start(ctx); err != nil {
		return fmt.Errorf(op, id, err)
	}
	t := now()
	err := r.transition(ctx, "phase_results", id, string(to), r.dialect.sql(finishPhaseSQL), string(to), r.dialect.json(output), nullString(message), t, t, id.String())
	return wrapf(op, id, err)
}
