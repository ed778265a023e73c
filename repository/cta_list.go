package repository

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/agentpipeline/persistence/models"
)

// CTAFilter selects CTA events across runs.
type CTAFilter struct {
	// Status keeps the events in this status; empty keeps the pending
	// ones.
	Status models.CTAStatus
}

// CTAPage is one page of CTA events, soonest deadline first.
type CTAPage struct {
	Events []models.CTAEvent
	// Next is the cursor of the following page, or empty on the last page.
	Next string
}

// ListCTAEvents returns the CTA events of every run in filter's status
// (pending unless it names another), soonest deadline first, then by ID,
// and the events without a deadline last, by ID: the queue of what waits
// for a person. Pages are cut by keyset, along the index on (status,
// expires_at, id), so a page costs the same however many events there
// are, and events created or answered while a caller pages through never
// make another event repeat or go missing. A page is one query, or two
// when it reaches the events without a deadline. It may go to a read
// replica.
func (r *Repository) ListCTAEvents(ctx context.Context, filter CTAFilter, page Page) (CTAPage, error) {
	const op = "list CTA events: %w"
	limit := page.Limit
	if limit == 0 {
		limit = DefaultPageLimit
	}
	if limit < 0 || limit > MaxPageLimit {
		return CTAPage{}, fmt.Errorf(op, &InputError{Field: "Page.Limit", Reason: fmt.Sprintf("must be 0 to %d", MaxPageLimit)})
	}
	status := filter.Status
	if status == "" {
		status = models.CTAPending
	}
	if !status.Valid() {
		return CTAPage{}, fmt.Errorf(op, &InputError{Field: "CTAFilter.Status", Reason: fmt.Sprintf("unknown CTA status %q", status)})
	}
	var c ctaCursor
	if page.After != "" {
		var err error
		if c, err = decodeCTACursor(page.After); err != nil {
			return CTAPage{}, fmt.Errorf(op, err)
		}
	}
	if err := r.start(ctx); err != nil {
		return CTAPage{}, fmt.Errorf(op, err)
	}
	var events []models.CTAEvent
	if !c.undated {
		q := "SELECT * FROM cta_events WHERE status = ? AND expires_at IS NOT NULL"
		args := []any{string(status)}
		if page.After != "" {
			// The bound on expires_at alone lets MariaDB seek to the
			// cursor: it does not range over a row comparison.
			q += " AND expires_at >= ? AND (expires_at, id) > (?, ?)"
			args = append(args, c.at, c.at, c.id)
		}
		q += " ORDER BY expires_at, id LIMIT ?"
		if err := r.scan(ctx, &events, q, append(args, limit+1)...); err != nil {
			return CTAPage{}, fmt.Errorf(op, err)
		}
	}
	if len(events) <= limit {
		q := "SELECT * FROM cta_events WHERE status = ? AND expires_at IS NULL"
		args := []any{string(status)}
		if c.undated {
			q += " AND id > ?"
			args = append(args, c.id)
		}
		q += " ORDER BY id LIMIT ?"
		var undated []models.CTAEvent
		if err := r.scan(ctx, &undated, q, append(args, limit+1-len(events))...); err != nil {
			return CTAPage{}, fmt.Errorf(op, err)
		}
		events = append(events, undated...)
	}
	inUTC(&events)
	var next string
	if len(events) > limit {
		events = events[:limit]
		next = encodeCTACursor(events[limit-1])
	}
	return CTAPage{Events: events, Next: next}, nil
}

// ctaCursor is the position of the last event of a page: its deadline
// and ID, or its ID among the events without a deadline.
type ctaCursor struct {
	undated bool
	at      time.Time
	id      string
}

// A CTA cursor is a byte telling whether the event has a deadline, the
// deadline in Unix microseconds and the event's ID, opaque to callers.
func encodeCTACursor(e models.CTAEvent) string {
	b := make([]byte, 0, 9+len(e.ID))
	if e.ExpiresAt == nil {
		b = append(b, 1)
		b = binary.BigEndian.AppendUint64(b, 0)
	} else {
		b = append(b, 0)
		b = binary.BigEndian.AppendUint64(b, uint64(e.ExpiresAt.UnixMicro()))
	}
	return base64.RawURLEncoding.EncodeToString(append(b, e.ID...))
}

func decodeCTACursor(s string) (ctaCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 10 || b[0] > 1 || checkName("id", string(b[9:])) != nil {
		return ctaCursor{}, &InputError{Field: "Page.After", Reason: "not a cursor returned by ListCTAEvents"}
	}
	return ctaCursor{
		undated: b[0] == 1,
		at:      time.UnixMicro(int64(binary.BigEndian.Uint64(b[1:9]))).UTC(),
		id:      string(b[9:]),
	}, nil
}
