package repository

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
)

// NewSandbox is the input of [Repository.CreateSandboxRecord], its fields
// named as those of [models.Sandbox] they fill.
type NewSandbox struct {
	// ID is the sandbox's ID at its provider. Required.
	ID string
	// FeatureRunID is the run the sandbox serves. Required; the run must exist.
	FeatureRunID uuid.UUID
	// Provider names who hosts the sandbox.
	Provider string
	// Metadata is free JSON stored with the sandbox.
	Metadata any
}

// CreateSandboxRecord inserts a sandbox in status creating. When a sandbox
// with in.ID exists it returns nil and keeps the existing row as it is. A
// missing run returns [ErrNotFound].
func (r *Repository) CreateSandboxRecord(ctx context.Context, in NewSandbox) error {
	const op = "create sandbox %q: %w"
	if err := firstErr(
		checkName("NewSandbox.ID", in.ID),
		checkID("NewSandbox.FeatureRunID", in.FeatureRunID),
		checkText("NewSandbox.Provider", in.Provider, MaxNameBytes),
	); err != nil {
		return fmt.Errorf(op, in.ID, err)
	}
	metadata, err := encodeJSON("NewSandbox.Metadata", in.Metadata)
	if err != nil {
		return fmt.Errorf(op, in.ID, err)
	}
	if err := r.startWrite(ctx); err != nil {
		return fmt.Errorf(op, in.ID, err)
	}
	t := r.now()
	err = r.create(ctx, r.inserts.sandbox, in.ID, in.FeatureRunID.String(), string(models.SandboxCreating),
		in.Provider, r.json(metadata), t, t)
	if err != nil {
		if errors.As(err, new(*foreignKeyError)) {
			err = fmt.Errorf("feature run %s: %w", in.FeatureRunID, ErrNotFound)
		}
		return fmt.Errorf(op, in.ID, err)
	}
	return nil
}

// sandboxSources lists, for each status, the statuses a sandbox may move to
// it from. A sandbox is only ever created in creating, and never leaves
// stopped or failed.
var sandboxSources = map[models.SandboxStatus][]models.SandboxStatus{
	models.SandboxCreating: nil,
	models.SandboxRunning:  {models.SandboxCreating, models.SandboxPaused},
	models.SandboxPaused:   {models.SandboxRunning},
	models.SandboxStopped:  {models.SandboxCreating, models.SandboxRunning, models.SandboxPaused},
	models.SandboxFailed:   {models.SandboxCreating, models.SandboxRunning, models.SandboxPaused},
}

// updateSandbox holds, for each status, the guarded update that moves a
// sandbox to it, with the vars status, time and ID. Nothing moves to
// creating: its guard never matches, so only a sandbox already creating is
// done. A move to running records when the sandbox first started, and a
// move to stopped or failed when it stopped; each statement assigns only
// the columns its move sets, so that MariaDB, which prepares it at every
// call, parses no assignment that would keep a column as it is.
var updateSandbox = func() map[models.SandboxStatus]move {
	m := make(map[models.SandboxStatus]move, len(sandboxSources))
	for to, from := range sandboxSources {
		guard := "FALSE"
		if len(from) > 0 {
			in := make([]string, len(from))
			for i, s := range from {
				in[i] = "'" + string(s) + "'"
			}
			guard = "status IN (" + strings.Join(in, ", ") + ")"
		}
		touch := []string{"updated_at = $2"}
		if to == models.SandboxRunning {
			touch = append(touch, "started_at = COALESCE(started_at, $2)")
		}
		if to.Terminal() {
			touch = append(touch, "stopped_at = COALESCE(stopped_at, $2)")
		}
		m[to] = newMove("sandboxes", "status = $1", touch, guard, guard, "status = $1")
	}
	return m
}()

// UpdateSandboxStatus moves a sandbox to status: from creating to running,
// paused, stopped or failed; between running and paused; and from either to
// stopped or failed. Setting the status the sandbox is in changes nothing.
// Any other move, such as leaving stopped, returns [ErrInvalidTransition].
//
// Through [Repository.AtStep] every move, to stopped and failed too, is
// fenced: a move at a step earlier than the sandbox's last fenced move
// changes nothing and returns nil.
func (r *Repository) UpdateSandboxStatus(ctx context.Context, sandboxID string, status models.SandboxStatus) error {
	const op = "update sandbox %q status: %w"
	if err := checkName("sandboxID", sandboxID); err != nil {
		return fmt.Errorf(op, sandboxID, err)
	}
	_, ok := sandboxSources[status]
	if !ok {
		return fmt.Errorf(op, sandboxID, &InputError{Field: "status", Reason: fmt.Sprintf("unknown sandbox status %q", status)})
	}
	if err := r.startWrite(ctx); err != nil {
		return fmt.Errorf(op, sandboxID, err)
	}
	err := r.move(ctx, updateSandbox[status], []any{string(status), r.now(), sandboxID}, string(status), "")
	return wrapf(op, sandboxID, tooLarge(err, "status", "status"))
}

// leakedSandboxesSQL finds live sandboxes of ended or idle runs. Live
// sandboxes are few, so it starts from them (the partial index
// idx_sandboxes_live) and looks their runs up by primary key.
const leakedSandboxesSQL = `
SELECT s.* FROM sandboxes AS s
JOIN feature_runs AS r ON r.id = s.feature_run_id
WHERE s.status IN ('creating', 'running', 'paused')
	AND (r.status IN ('completed', 'failed') OR r.updated_at < ?)
ORDER BY s.created_at, s.id`

// LeakedSandboxes returns the sandboxes still creating, running or paused
// whose run has completed or failed, or whose run has not been updated for
// olderThan (its workflow probably died). Each one costs money until it is
// stopped.
func (r *Repository) LeakedSandboxes(ctx context.Context, olderThan time.Duration) ([]models.Sandbox, error) {
	const op = "find leaked sandboxes: %w"
	if olderThan <= 0 {
		return nil, fmt.Errorf(op, &InputError{Field: "olderThan", Reason: "must be positive"})
	}
	if err := r.start(ctx); err != nil {
		return nil, fmt.Errorf(op, err)
	}
	var leaked []models.Sandbox
	if err := r.scan(ctx, &leaked, leakedSandboxesSQL, r.now().Add(-olderThan)); err != nil {
		return nil, fmt.Errorf(op, err)
	}
	inUTC(&leaked)
	return leaked, nil
}
