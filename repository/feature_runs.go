package repository

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
)

// NewFeatureRun is the input of [Repository.CreateFeatureRun], its fields
// named as those of [models.FeatureRun] they fill.
type NewFeatureRun struct {
	// ID identifies the run. Derive it with StableID from the event that
	// started the workflow so that a replayed create finds the first row.
	// The zero UUID gets a fresh UUIDv7, which a replay cannot reproduce.
	ID uuid.UUID
	// Phase is the phase the run starts in. Required.
	Phase string
	// Memories are the run's first memories; duplicates are dropped.
	Memories []any
	// Metadata is free JSON stored with the run.
	Metadata any
}

// CreateFeatureRun inserts a running feature run and returns its ID. When a
// run with in.ID exists it returns in.ID and nil and keeps the existing row
// as it is.
func (r *Repository) CreateFeatureRun(ctx context.Context, in NewFeatureRun) (uuid.UUID, error) {
	const op = "create feature run"
	if err := checkName("NewFeatureRun.Phase", in.Phase); err != nil {
		return uuid.Nil, fmt.Errorf("%s: %w", op, err)
	}
	memories, err := encodeSet("NewFeatureRun.Memories", in.Memories)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%s: %w", op, err)
	}
	metadata, err := encodeJSON("NewFeatureRun.Metadata", in.Metadata)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%s: %w", op, err)
	}
	if err := r.startWrite(ctx); err != nil {
		return uuid.Nil, fmt.Errorf("%s: %w", op, err)
	}
	id, err := idOrNew(in.ID)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%s: %w", op, err)
	}
	t := r.now()
	err = r.create(ctx, r.inserts.featureRun, id.String(), in.Phase, string(models.RunRunning),
		r.json(memories), r.json(metadata), t, t)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%s %s: %w", op, id, err)
	}
	return id, nil
}

// idOrNew returns id, or a fresh UUIDv7 when id is zero.
func idOrNew(id uuid.UUID) (uuid.UUID, error) {
	if id != uuid.Nil {
		return id, nil
	}
	return uuid.NewV7()
}

var updatePhase = newMove("feature_runs", "phase = $1", []string{"updated_at = $2"}, "status = 'running' AND phase <> $1", "status = 'running'", "phase = $1")

// UpdateFeatureRunPhase moves a running run to phase. Setting the phase the
// run is already in changes nothing. The phase of a completed or failed run
// is final: changing it returns [ErrInvalidTransition].
//
// Through [Repository.AtStep] the move is fenced: a move at a step earlier
// than the run's last fenced move changes nothing and returns nil.
func (r *Repository) UpdateFeatureRunPhase(ctx context.Context, runID uuid.UUID, phase string) error {
	const op = "update feature run %s phase: %w"
	if err := checkID("runID", runID); err != nil {
		return fmt.Errorf(op, runID, err)
	}
	if err := checkName("phase", phase); err != nil {
		return fmt.Errorf(op, runID, err)
	}
	if err := r.startWrite(ctx); err != nil {
		return fmt.Errorf(op, runID, err)
	}
	err := r.move(ctx, updatePhase, []any{phase, r.now(), runID.String()}, string(models.RunRunning), "")
	// The detail is written only for a refusal: a write that succeeds
	// formats nothing, and allocates nothing for it.
	if err != nil {
		if refused := (*TransitionError)(nil); errors.As(err, &refused) {
			refused.Detail = fmt.Sprintf("phase %q", phase)
		}
	}
	return wrapf(op, runID, tooLarge(err, "phase", "phase"))
}

// UpdateFeatureRunMemories appends to the run's memories each value that is
// not JSON-equal to one already there (key order, whitespace and the form of
// numbers do not matter), in one statement on the server. Values keep the
// order of their first appearance. An empty memories is a no-op that does
// not touch the database.
//
// Appending to a completed or failed run returns [ErrInvalidTransition],
// unless every value is already present, which is a replay and returns nil.
func (r *Repository) UpdateFeatureRunMemories(ctx context.Context, runID uuid.UUID, memories []any) error {
	const op = "append feature run %s memories: %w"
	if err := checkID("runID", runID); err != nil {
		return fmt.Errorf(op, runID, err)
	}
	values, err := encodeSet("memories", memories)
	if err != nil {
		return fmt.Errorf(op, runID, err)
	}
	if err := r.startWrite(ctx); err != nil {
		return fmt.Errorf(op, runID, err)
	}
	if len(memories) == 0 {
		return nil
	}
	err = r.transition(ctx, r.dialect.AppendMemories, []any{string(values), r.now(), runID.String()}, string(models.RunRunning), "new memories")
	if err != nil && r.dialect.TooLarge != nil && r.dialect.TooLarge(err) {
		err = &InputError{Field: "memories", Reason: "the run's memories would grow past the largest value the database builds: " + err.Error()}
	}
	return wrapf(op, runID, tooLarge(err, "memories", "memories"))
}

var finishRun = newGuardedUpdate("feature_runs", "status = $1, error = $2, completed_at = $3, updated_at = $4", "status = 'running'", "status = $1")

// CompleteFeatureRun moves a running run to completed. Completing a
// completed run changes nothing; completing a failed run returns
// [ErrInvalidTransition].
func (r *Repository) CompleteFeatureRun(ctx context.Context, runID uuid.UUID) error {
	return r.finishRun(ctx, "complete feature run %s: %w", runID, models.RunCompleted, "")
}

// FailFeatureRun moves a running run to failed. Failing a failed run changes
// nothing; failing a completed run returns [ErrInvalidTransition].
func (r *Repository) FailFeatureRun(ctx context.Context, runID uuid.UUID) error {
	return r.finishRun(ctx, "fail feature run %s: %w", runID, models.RunFailed, "")
}

// FailFeatureRunWithError is [Repository.FailFeatureRun] that also records why the run
// failed. A replay keeps the first message.
func (r *Repository) FailFeatureRunWithError(ctx context.Context, runID uuid.UUID, message string) error {
	return r.finishRun(ctx, "fail feature run %s: %w", runID, models.RunFailed, message)
}

func (r *Repository) finishRun(ctx context.Context, op string, runID uuid.UUID, to models.RunStatus, message string) error {
	if err := checkID("runID", runID); err != nil {
		return fmt.Errorf(op, runID, err)
	}
	if err := checkText("message", message, MaxMessageBytes); err != nil {
		return fmt.Errorf(op, runID, err)
	}
	if err := r.startWrite(ctx); err != nil {
		return fmt.Errorf(op, runID, err)
	}
	t := r.now()
	err := r.transition(ctx, finishRun[r.dialect], []any{string(to), nullString(message), t, t, runID.String()}, string(to), "")
	return wrapf(op, runID, tooLarge(err, "message", "", "message"))
}

// wrapf formats a non-nil err with the operation's format and subject.
// subject is a type parameter, so a write that succeeds boxes nothing.
func wrapf[T any](format string, subject T, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format, subject, err)
}

// nullString maps "" to SQL NULL.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
