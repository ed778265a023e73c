package repository

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/agentpipeline/persistence/models"
)

// runStatuses are the statuses of a run, in the order counts list them.
var runStatuses = []models.RunStatus{models.RunRunning, models.RunCompleted, models.RunFailed}

// checkRunFilter checks a RunFilter before the database is touched.
func checkRunFilter(filter RunFilter) error {
	for _, s := range filter.Statuses {
		if !s.Valid() {
			return &InputError{Field: "RunFilter.Statuses", Reason: fmt.Sprintf("unknown run status %q", s)}
		}
	}
	if filter.Phase != "" {
		if err := checkName("RunFilter.Phase", filter.Phase); err != nil {
			return err
		}
	}
	return firstErr(checkTime("RunFilter.CreatedFrom", filter.CreatedFrom), checkTime("RunFilter.CreatedBefore", filter.CreatedBefore))
}

// statusesOf returns the distinct statuses filter keeps, in the order of
// runStatuses: all of them when it names none.
func statusesOf(filter RunFilter) []models.RunStatus {
	if len(filter.Statuses) == 0 {
		return runStatuses
	}
	var out []models.RunStatus
	for _, s := range runStatuses {
		if slices.Contains(filter.Statuses, s) {
			out = append(out, s)
		}
	}
	return out
}

// runsOfStatus renders the conditions that select the runs of filter in
// one status, the status bound first, for the index on (phase, status,
// created_at, id) or, without a phase, on (status, created_at, id).
func runsOfStatus(filter RunFilter, status models.RunStatus) (string, []any) {
	var where strings.Builder
	var args []any
	if filter.Phase != "" {
		where.WriteString("phase = ? AND ")
		args = append(args, filter.Phase)
	}
	where.WriteString("status = ?")
	args = append(args, string(status))
	if !filter.CreatedFrom.IsZero() {
		where.WriteString(" AND created_at >= ?")
		args = append(args, ceilMicro(filter.CreatedFrom).UTC())
	}
	if !filter.CreatedBefore.IsZero() {
		where.WriteString(" AND created_at < ?")
		args = append(args, ceilMicro(filter.CreatedBefore).UTC())
	}
	return where.String(), args
}

// listPhase is ListFeatureRuns for a filter with a phase: a page of each
// status, read in index order, merged by a UNION ALL into one page.
func (r *Repository) listPhase(ctx context.Context, filter RunFilter, after string, limit int) (RunPage, error) {
	const op = "list feature runs: %w"
	var cursor []any
	if after != "" {
		at, id, err := decodeCursor(after)
		if err != nil {
			return RunPage{}, fmt.Errorf(op, err)
		}
		cursor = []any{at, id}
	}
	var parts []string
	var args []any
	for i, status := range statusesOf(filter) {
		where, vars := runsOfStatus(filter, status)
		if cursor != nil {
			// The bound on created_at alone lets MariaDB seek to the
			// cursor: it does not range over a row comparison.
			where += " AND created_at <= ? AND (created_at, id) < (?, ?)"
			vars = append(append(vars, cursor[0]), cursor...)
		}
		parts = append(parts, fmt.Sprintf("SELECT * FROM (SELECT * FROM feature_runs WHERE %s ORDER BY created_at DESC, id DESC LIMIT ?) AS s%d", where, i))
		args = append(append(args, vars...), limit+1)
	}
	query := parts[0]
	if len(parts) > 1 {
		query = strings.Join(parts, " UNION ALL ") + " ORDER BY created_at DESC, id DESC LIMIT ?"
		args = append(args, limit+1)
	}
	var runs []models.FeatureRun
	if err := r.scan(ctx, &runs, query, args...); err != nil {
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

// [DefaultCountLimit] and [MaxCountLimit] bound the counts of
// [Repository.CountFeatureRuns].
const (
	DefaultCountLimit = 1_000
	MaxCountLimit     = 1_000_000
)

// RunCount is how many runs of a filter are in one status.
type RunCount struct {
	Status models.RunStatus
	// Count is the number of runs, at most the limit asked for.
	Count int64
	// More reports that there are more than Count: counting stopped at
	// the limit.
	More bool
}

// CountFeatureRuns counts the runs that match filter in each status, as
// tabs over a listing show them: running, completed and failed, in that
// order, or only the statuses filter.Statuses names. Each count stops at
// limit (0 means [DefaultCountLimit]; at most [MaxCountLimit]), past which
// [RunCount].More is set: a count reads at most limit+1 entries of an
// index, on (status, created_at, id) or, with a Phase, on (phase, status,
// created_at, id), so it costs the same however many runs the table
// holds. The counts are one statement. It may go to a read replica.
func (r *Repository) CountFeatureRuns(ctx context.Context, filter RunFilter, limit int) ([]RunCount, error) {
	const op = "count feature runs: %w"
	if limit == 0 {
		limit = DefaultCountLimit
	}
	if limit < 0 || limit > MaxCountLimit {
		return nil, fmt.Errorf(op, &InputError{Field: "limit", Reason: fmt.Sprintf("must be 0 to %d", MaxCountLimit)})
	}
	if err := checkRunFilter(filter); err != nil {
		return nil, fmt.Errorf(op, err)
	}
	if err := r.start(ctx); err != nil {
		return nil, fmt.Errorf(op, err)
	}
	statuses := statusesOf(filter)
	var parts []string
	var args []any
	for i, status := range statuses {
		where, vars := runsOfStatus(filter, status)
		parts = append(parts, fmt.Sprintf("SELECT %d AS k, count(*) AS n FROM (SELECT 1 AS one FROM feature_runs WHERE %s ORDER BY created_at DESC, id DESC LIMIT ?) AS c%d", i, where, i))
		args = append(append(args, vars...), limit+1)
	}
	var rows []struct{ K, N int64 }
	if err := r.scan(ctx, &rows, strings.Join(parts, " UNION ALL "), args...); err != nil {
		return nil, fmt.Errorf(op, err)
	}
	counts := make([]RunCount, len(statuses))
	for i, s := range statuses {
		counts[i].Status = s
	}
	for _, row := range rows {
		if row.K < 0 || int(row.K) >= len(counts) {
			continue
		}
		c := &counts[row.K]
		c.Count = row.N
		if row.N > int64(limit) {
			c.Count, c.More = int64(limit), true
		}
	}
	return counts, nil
}
