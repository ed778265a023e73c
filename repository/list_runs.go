package repository

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
)

// RunFilter selects feature runs. Its zero value selects every run.
type RunFilter struct {
	// Statuses keeps runs in any of these statuses; empty keeps all.
	Statuses []models.RunStatus
	// CreatedFrom keeps runs created at or after it, unless it is zero.
	CreatedFrom time.Time
	// CreatedBefore keeps runs created before it, unless it is zero.
	CreatedBefore time.Time
	// Phase keeps runs in this phase (FeatureRun.Phase, compared
	// exactly), unless it is empty.
	Phase string
}

// Page asks for one page of a listing.
type Page struct {
	// Limit is the most items returned: 1 to MaxPageLimit; 0 means
	// DefaultPageLimit.
	Limit int
	// After is the Next cursor of the previous page; empty for the first.
	After string
}

// Page limits of [Repository.ListFeatureRuns].
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 1000
)

// RunPage is one page of feature runs, newest first.
type RunPage struct {
	Runs []models.FeatureRun
	// Next is the cursor of the following page, or empty on the last page.
	Next string
}

// ListFeatureRuns returns the runs that match filter, newest first (by
// creation time, then ID), one page at a time. Pages are cut by keyset: the
// cursor holds the position of the last run returned, so runs created while
// a caller pages through never make a run repeat or go missing.
//
// With a Phase, it reads each status asked for (every status when
// Statuses is empty) along the index on (phase, status, created_at, id),
// at most a page from each, and merges them: a page costs the same
// however many runs the phase has. It may go to a read replica.
func (r *Repository) ListFeatureRuns(ctx context.Context, filter RunFilter, page Page) (RunPage, error) {
	const op = "list feature runs: %w"
	limit := page.Limit
	if limit == 0 {
		limit = DefaultPageLimit
	}
	if limit < 0 || limit > MaxPageLimit {
		return RunPage{}, fmt.Errorf(op, &InputError{Field: "Page.Limit", Reason: fmt.Sprintf("must be 0 to %d", MaxPageLimit)})
	}
	if err := checkRunFilter(filter); err != nil {
		return RunPage{}, fmt.Errorf(op, err)
	}
	if err := r.start(ctx); err != nil {
		return RunPage{}, fmt.Errorf(op, err)
	}
	if filter.Phase != "" {
		return r.listPhase(ctx, filter, page.After, limit)
	}
	q := r.from(r.db.WithContext(ctx), models.FeatureRun{})
	if len(filter.Statuses) > 0 {
		q = q.Where("status IN ?", filter.Statuses)
	}
	if !filter.CreatedFrom.IsZero() {
		q = q.Where("created_at >= ?", ceilMicro(filter.CreatedFrom).UTC())
	}
	if !filter.CreatedBefore.IsZero() {
		q = q.Where("created_at < ?", ceilMicro(filter.CreatedBefore).UTC())
	}
	if page.After != "" {
		at, id, err := decodeCursor(page.After)
		if err != nil {
			return RunPage{}, fmt.Errorf(op, err)
		}
		// The bound on created_at alone lets MariaDB seek to the cursor:
		// it does not range over a row comparison.
		q = q.Where("created_at <= ? AND (created_at, id) < (?, ?)", at, at, id)
	}
	var runs []models.FeatureRun
	if err := r.translate(ctx, q.Order("created_at DESC, id DESC").Limit(limit+1).Find(&runs).Error); err != nil {
		return RunPage{}, fmt.Errorf(op, err)
	}
	inUTC(&runs)
	var next string
	if len(runs) > limit {
		runs = runs[:limit]
		last := runs[limit-1]
		next = encodeCursor(last.CreatedAt, last.ID)
	}
	return RunPage{Runs: runs, Next: next}, nil
}

// A cursor is the creation time in Unix microseconds and the ID of the
// last run of a page, opaque to callers.
func encodeCursor(at time.Time, id uuid.UUID) string {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 24), uint64(at.UnixMicro()))
	return base64.RawURLEncoding.EncodeToString(append(b, id[:]...))
}

func decodeCursor(s string) (time.Time, uuid.UUID, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 24 {
		return time.Time{}, uuid.Nil, &InputError{Field: "Page.After", Reason: "not a cursor returned by ListFeatureRuns"}
	}
	at := time.UnixMicro(int64(binary.BigEndian.Uint64(b))).UTC()
	return at, uuid.UUID(b[8:]), nil
}
