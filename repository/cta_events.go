package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
)

// NewCTAEvent is the input of CreateCTAEvent.
type NewCTAEvent struct {
	// ID identifies the call to action. Required.
	ID string
	// FeatureRunID is the run that asks. Required; the run must exist.
	FeatureRunID uuid.UUID
	// Kind names what is asked, such as "approval".
	Kind string
	// Request is what the person is shown, stored as JSON.
	Request any
	// ExpiresAt is the deadline for an answer; zero means none. It is
	// stored rounded up to the microsecond, the precision databases keep,
	// so that the event never expires before it.
	ExpiresAt time.Time
}

// CreateCTAEvent inserts a pending CTA event. When an event with in.ID exists
// it returns nil and keeps the existing row as it is. A missing run returns
// ErrNotFound.
func (r *Repository) CreateCTAEvent(ctx context.Context, in NewCTAEvent) error {
	const op = "create CTA event %q: %w"
	if err := firstErr(
		checkName("NewCTAEvent.ID", in.ID),
		checkID("NewCTAEvent.FeatureRunID", in.FeatureRunID),
		checkText("NewCTAEvent.Kind", in.Kind, MaxNameBytes),
		checkTime("NewCTAEvent.ExpiresAt", in.ExpiresAt),
	); err != nil {
		return fmt.Errorf(op, in.ID, err)
	}
	request, err := encodeJSON("NewCTAEvent.Request", in.Request)
	if err != nil {
		return fmt.Errorf(op, in.ID, err)
	}
	if err := r.startWrite(ctx); err != nil {
		return fmt.Errorf(op, in.ID, err)
	}
	var expiresAt *time.Time
	if !in.ExpiresAt.IsZero() {
		// Rounded up, so that no sweeper times the event out before its
		// deadline.
		e := ceilMicro(in.ExpiresAt).UTC()
		expiresAt = &e
	}
	t := r.now()
	err = r.create(ctx, r.inserts.ctaEvent, in.ID, in.FeatureRunID.String(), in.Kind, string(models.CTAPending),
		r.json(request), expiresAt, t, t)
	if err != nil {
		if errors.As(err, new(*foreignKeyError)) {
			err = fmt.Errorf("feature run %s: %w", in.FeatureRunID, ErrNotFound)
		}
		return fmt.Errorf(op, in.ID, err)
	}
	return nil
}

var resolveCTA = newGuardedUpdate("cta_events", "status = $1, response_data = $2, resolved_at = $3, updated_at = $4", "status = 'pending'", "status = $1")

// CompleteCTAEvent records a person's answer to a pending CTA event and moves
// it to completed. Completing a completed event changes nothing and keeps the
// first response. Completing a timed-out event returns ErrInvalidTransition:
// the answer came too late and is not stored.
func (r *Repository) CompleteCTAEvent(ctx context.Context, ctaID string, responseData any) error {
	const op = "complete CTA event %q: %w"
	response, err := encodeJSON("responseData", responseData)
	if err != nil {
		return fmt.Errorf(op, ctaID, err)
	}
	return r.resolveCTA(ctx, op, ctaID, models.CTACompleted, response)
}

// TimeoutCTAEvent moves a pending CTA event to timed_out. Timing out a
// timed-out event changes nothing. Timing out a completed event returns
// ErrInvalidTransition: the answer arrived first and is kept.
func (r *Repository) TimeoutCTAEvent(ctx context.Context, ctaID string) error {
	return r.resolveCTA(ctx, "time out CTA event %q: %w", ctaID, models.CTATimedOut, nil)
}

func (r *Repository) resolveCTA(ctx context.Context, op, id string, to models.CTAStatus, response jsonValue) error {
	if err := checkName("ctaID", id); err != nil {
		return fmt.Errorf(op, id, err)
	}
	if err := r.startWrite(ctx); err != nil {
		return fmt.Errorf(op, id, err)
	}
	t := r.now()
	err := r.transition(ctx, resolveCTA[r.dialect], []any{string(to), r.json(response), t, t, id}, string(to), "")
	return wrapf(op, id, tooLarge(err, "responseData", "", "responseData"))
}

// ExpireCTAEvents times out every pending CTA event whose deadline is at or
// before now, at most limit of them (oldest deadline first), and returns
// their IDs. It uses the same guard as TimeoutCTAEvent, so an event answered
// a moment before is never overwritten, and it is one statement: on
// PostgreSQL concurrent sweepers skip the events another has claimed, so no
// event is claimed twice. Call it until it returns fewer than limit IDs to
// drain a backlog.
func (r *Repository) ExpireCTAEvents(ctx context.Context, now time.Time, limit int) ([]string, error) {
	const op = "expire CTA events: %w"
	if now.IsZero() {
		return nil, fmt.Errorf(op, &InputError{Field: "now", Reason: "must not be zero"})
	}
	if err := checkTime("now", now); err != nil {
		return nil, fmt.Errorf(op, err)
	}
	if limit < 1 || limit > MaxPageLimit {
		return nil, fmt.Errorf(op, &InputError{Field: "limit", Reason: fmt.Sprintf("must be 1 to %d", MaxPageLimit)})
	}
	if err := r.startWrite(ctx); err != nil {
		return nil, fmt.Errorf(op, err)
	}
	now = now.UTC().Truncate(time.Microsecond)
	ids, err := r.expire(ctx, []any{now, r.now(), limit})
	if err != nil {
		return nil, fmt.Errorf(op, err)
	}
	return ids, nil
}

// expire runs the dialect's sweeper with vars; see dialect.Expire.
func (r *Repository) expire(ctx context.Context, vars []any) ([]string, error) {
	x := r.dialect.ExpireCTAEvents
	claim := func(tx *Repository) ([]string, error) {
		ids := make([]string, 0, vars[2].(int))
		err := tx.writeRows(ctx, "cta_events", x.Claim.SQL, x.Claim.Args(vars), func(rows *sql.Rows) error {
			var id string
			err := rows.Scan(&id)
			ids = append(ids, id)
			return err
		})
		return ids, err
	}
	if x.Update == nil {
		return claim(r)
	}
	var ids []string
	err := r.Transaction(ctx, func(tx *Repository) error {
		var err error
		if ids, err = claim(tx); err != nil || len(ids) == 0 {
			return err
		}
		args := x.Update.Args(vars)
		for _, id := range ids {
			args = append(args, id)
		}
		_, err = tx.exec(ctx, "cta_events", x.Update.SQL+" (?"+strings.Repeat(", ?", len(ids)-1)+")", args)
		return err
	})
	return ids, err
}
