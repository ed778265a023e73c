package repository

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
)

// NewPhaseResult is the input of [Repository.CreatePhaseResult], its
// fields named as those of [models.PhaseResult] they fill.
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
// row as it is. A missing run returns [ErrNotFound].
func (r *Repository) CreatePhaseResult(ctx context.Context, in NewPhaseResult) (uuid.UUID, error) {
	const op = "create phase result: %w"
	if err := firstErr(
		checkID("NewPhaseResult.FeatureRunID", in.FeatureRunID),
		checkName("NewPhaseResult.Phase", in.Phase),
	); err != nil {
		return uuid.Nil, fmt.Errorf(op, err)
	}
	if err := r.startWrite(ctx); err != nil {
		return uuid.Nil, fmt.Errorf(op, err)
	}
	id, err := idOrNew(in.ID)
	if err != nil {
		return uuid.Nil, fmt.Errorf(op, err)
	}
	t := r.now()
	err = r.create(ctx, r.inserts.phaseResult, id.String(), in.FeatureRunID.String(), in.Phase, string(models.PhaseRunning), t, t)
	if err != nil {
		if errors.As(err, new(*foreignKeyError)) {
			err = fmt.Errorf("feature run %s: %w", in.FeatureRunID, ErrNotFound)
		}
		return uuid.Nil, fmt.Errorf("create phase result %s: %w", id, err)
	}
	return id, nil
}

var finishPhase = newGuardedUpdate("phase_results", "status = $1, output = $2, error = $3, finished_at = $4, updated_at = $5", "status = 'running'", "status = $1")

// PassPhaseResult moves a running phase result to passed and stores output
// as its JSON output. Passing a passed result changes nothing and keeps the
// first output; passing a failed one returns [ErrInvalidTransition].
func (r *Repository) PassPhaseResult(ctx context.Context, phaseResultID uuid.UUID, output any) error {
	const op = "pass phase result %s: %w"
	out, err := encodeJSON("output", output)
	if err != nil {
		return fmt.Errorf(op, phaseResultID, err)
	}
	return r.finishPhase(ctx, op, phaseResultID, models.PhasePassed, out, "")
}

// FailPhaseResult moves a running phase result to failed. Failing a failed
// result changes nothing; failing a passed one returns [ErrInvalidTransition].
func (r *Repository) FailPhaseResult(ctx context.Context, phaseResultID uuid.UUID) error {
	return r.finishPhase(ctx, "fail phase result %s: %w", phaseResultID, models.PhaseFailed, nil, "")
}

// FailPhaseResultWithError is [Repository.FailPhaseResult] that also records why the
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
	if err := r.startWrite(ctx); err != nil {
		return fmt.Errorf(op, id, err)
	}
	t := r.now()
	err := r.transition(ctx, finishPhase[r.dialect], []any{string(to), r.json(output), nullString(message), t, t, id.String()}, string(to), "")
	all := "message"
	if output != nil {
		all = "output"
	}
	return wrapf(op, id, tooLarge(err, all, "", "output", "message"))
}
