package repository

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/internal/dialect"
	"github.com/agentpipeline/persistence/models"
)

// NewCTAEvent is the input of [Repository.CreateCTAEvent]. Its fields are
// named as those of [models.CTAEvent] they fill. ExpiresAt alone differs in
// type: a zero time here is the model's nil, as a deadline a caller leaves
// out is more often a zero value than a nil pointer.
type NewCTAEvent struct {
	// ID identifies the call to action. Required.
	ID string
	// FeatureRunID is the run that asks. Required; the run must exist.
	FeatureRunID uuid.UUID
	// Kind names what is asked, such as "approval".
	Kind string
	// RequestData is what the person is shown, stored as JSON.
	RequestData any
	// ExpiresAt is the deadline for an answer; zero means none. It is
	// stored rounded up to the microsecond, the precision databases keep,
	// so that the event never expires before it.
	ExpiresAt time.Time
}

// CreateCTAEvent inserts a pending CTA event. When an event with in.ID exists
// it returns nil and keeps the existing row as it is. A missing run returns
// [ErrNotFound].
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
	request, err := encodeJSON("NewCTAEvent.RequestData", in.RequestData)
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
// first response. Completing a timed-out event returns [ErrInvalidTransition]:
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
// [ErrInvalidTransition]: the answer arrived first and is kept.
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
// before now, at most limit of them, and returns their IDs. Call it until
// it returns fewer than limit IDs to drain a backlog.
//
// Its answer is linearizable: the sweep takes effect at a moment within
// the call at which every event it returns is due and pending, and at
// which, unless it returns limit IDs, no other due event is pending. So a
// sweep that returns fewer than limit waits for each due event another
// call holds (another sweeper, or an answer about to commit) and takes it
// if it is still pending once freed: a read after the sweep never finds
// pending a due event the sweep left. A sweep that returns limit IDs
// takes the oldest deadlines first but passes over the events other calls
// hold, so that sweepers draining a backlog do not queue behind each
// other. It uses the same guard as [Repository.TimeoutCTAEvent], so an
// event answered a moment before is never overwritten, and sweepers
// running at once never claim the same event.
//
// On SQLite a sweep is one statement. On PostgreSQL it is one statement
// too, sent a second time, waiting, when more events were due than limit
// but others held so many that it claimed fewer; the first then changed
// nothing. MariaDB has no UPDATE … RETURNING, so there a sweep is not one
// statement but a plain read counting the due events (left out inside a
// transaction), then, if any are due, a transaction of two statements, a
// claim and the update. The transaction is made again, waiting, when a
// claim that skipped came up short, and when InnoDB rolled it back to
// break a deadlock. The statements of each database, in package
// internal/dialect, say why each answer is linearizable.
//
// On SQLite and MariaDB the moment is one for all the events. On
// PostgreSQL an event created while the sweep's statement runs is not in
// the statement's snapshot, and the sweep may leave it pending: the
// answer is then linearizable event by event, as the contract has it
// ("the concurrent calls on that row"), taking effect before that create
// for that event, but not at one moment for all of them.
//
// Inside [Repository.Transaction], where a claim keeps its locks until the
// transaction ends, a sweep waits for held events from the start.
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
	ids, err := r.expire(ctx, []any{now, r.now(), limit, false, limit + 1})
	if err != nil {
		return nil, fmt.Errorf(op, err)
	}
	return ids, nil
}

// errSkipped rolls back a claim that passed over events others held and
// got fewer than its limit.
var errSkipped = errors.New("the claim passed over events others held")

// expire runs the dialect's sweeper with vars; see dialect.Expire.
func (r *Repository) expire(ctx context.Context, vars []any) ([]string, error) {
	x := r.dialect.ExpireCTAEvents
	limit := vars[2].(int)
	claim := func(tx *Repository, st *dialect.Statement) (ids []string, skipped bool, err error) {
		ids = make([]string, 0, limit)
		err = tx.writeRows(ctx, "cta_events", st.SQL, st.Args(vars), func(rows *sql.Rows) error {
			var id sql.NullString
			err := rows.Scan(&id)
			if id.Valid {
				ids = append(ids, id.String)
			} else {
				skipped = true
			}
			return err
		})
		return ids, skipped, err
	}
	// Inside the caller's transaction a claim keeps its locks until that
	// transaction ends, even one rolled back to a savepoint, and a plain
	// read sees the transaction's snapshot: there the sweep waits from the
	// start, holding events in the order every waiting sweeper takes them.
	inTx := r.inTransaction()
	if x.Sweep != nil {
		vars[3] = inTx
		ids, skipped, err := claim(r, x.Sweep)
		if err != nil || !skipped {
			return ids, err
		}
		vars[3] = true
		ids, _, err = claim(r, x.Sweep)
		return ids, err
	}
	st := x.Wait
	if !inTx {
		var due int64
		err := r.query(ctx, "cta_events", x.Backlog.SQL, x.Backlog.Args(vars), true, func(rows *sql.Rows) error { return rows.Scan(&due) })
		if err != nil || due == 0 {
			return nil, err
		}
		if due > int64(limit) {
			st = x.Skip
		}
	}
	for attempt := 1; ; attempt++ {
		var ids []string
		err := r.transaction(ctx, x.TxOptions, func(tx *Repository) error {
			var err error
			ids, _, err = claim(tx, st)
			switch {
			case err != nil:
				return err
			case st == x.Skip && len(ids) < limit:
				return errSkipped
			case len(ids) == 0:
				return nil
			}
			list, err := json.Marshal(ids)
			if err != nil {
				return err
			}
			_, err = tx.exec(ctx, "cta_events", x.Update.SQL, x.Update.Args(append(vars[:len(vars):len(vars)], string(list))))
			return err
		})
		switch {
		case errors.Is(err, errSkipped):
			st = x.Wait
			continue
		case err != nil && attempt < maxAttempts && r.dialect.Retry != nil && !inTx && r.dialect.Retry(err) && ctx.Err() == nil:
			// A deadlock rolled the whole transaction back.
			continue
		case err != nil:
			return nil, err
		}
		return ids, nil
	}
}
