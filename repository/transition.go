package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
)

// A guardedUpdate changes one row, named by its ID, only while the row is
// in a state the change may leave. When it changes nothing, a probe reads
// the row's state, which tells a replay (already done) from a refusal.
// Each database runs it in its own way (see dialect.guard), rendered once
// when the package loads.
type guardedUpdate struct {
	table string
	// update is the guarded UPDATE, with ? placeholders, the row's ID last.
	update string
	// probe lists the columns the probe reads, status first.
	probe string
	// rendered holds the statements of each database.
	rendered map[*dialect]*guard
}

// guard is a guardedUpdate as one database runs it.
type guard struct {
	table string
	// sql is the statement to run. Where probe is empty it is a single
	// statement that makes the change and reads the probe: it returns the
	// number of rows it changed, then the probe's columns, as the row was
	// when the statement started; no row when the row does not exist.
	// Otherwise it is the bare guarded UPDATE.
	sql string
	// probe, if any, is the separate read of the probe's columns, run
	// when sql changed no row. It takes probeVars of sql's vars.
	probe     string
	probeVars []int
	// extra says the probe reads a second column (see state.Extra).
	extra bool
}

func newGuardedUpdate(table, update, probe string) *guardedUpdate {
	g := &guardedUpdate{table: table, update: update, probe: probe, rendered: make(map[*dialect]*guard, len(dialects))}
	for _, d := range dialects {
		g.rendered[d] = d.guard(g)
	}
	return g
}

// state is what a probe read of a row.
type state struct {
	// Status is the row's status.
	Status string
	// Extra is the probe's second column, if any: the run's phase, or how
	// many of the memories asked for are missing.
	Extra sql.NullString
}

// errRetry is a judge's verdict that the guard would have matched the
// state the probe read: the row changed between the guard's check and the
// probe, so the statement runs again.
var errRetry = errors.New("row changed under the statement")

// maxAttempts bounds how often a transition runs again after the row kept
// changing under it. Each attempt follows a change that another call
// committed, so reaching it takes a storm of writes to one row, or
// something outside the package (such as a trigger) that silently skips
// updates.
const maxAttempts = 64

// transition runs the guarded update gd with vars and decides its outcome:
// nil when it changed the row; otherwise judge's verdict on the row's
// state: nil for a replay (the row is already as asked), a
// *TransitionError for a refusal, or errRetry when the guard would have
// matched the state read, which makes it run again. A missing row is
// ErrNotFound.
//
// The verdict is linearizable: the state it judges is the row as it was at
// one instant during the call, at which the call changed nothing.
func (r *Repository) transition(ctx context.Context, gd *guard, vars []any, judge func(state) error) error {
	for range maxAttempts {
		changed, st, found, err := r.runGuard(ctx, gd, vars)
		switch {
		case err != nil:
			return err
		case changed || r.dryRun():
			return nil
		case !found:
			return ErrNotFound
		}
		if err := judge(st); !errors.Is(err, errRetry) {
			return err
		}
	}
	return fmt.Errorf("%s: gave up after %d attempts: the row kept changing, or its updates are being skipped", gd.table, maxAttempts)
}

// runGuard runs gd once and returns whether it changed the row and, if it
// did not, the row's state.
func (r *Repository) runGuard(ctx context.Context, gd *guard, vars []any) (changed bool, st state, found bool, err error) {
	if gd.probe == "" {
		err = r.query(ctx, gd.table, gd.sql, vars, true, func(rows *sql.Rows) error {
			var n int64
			found = true
			if err := rows.Scan(st.dest(gd, &n)...); err != nil {
				return err
			}
			changed = n > 0
			return nil
		})
		return changed, st, found, err
	}
	n, err := r.exec(ctx, gd.table, gd.sql, vars)
	if err != nil || n > 0 || r.dryRun() {
		return n > 0, st, false, err
	}
	probeVars := make([]any, len(gd.probeVars))
	for i, v := range gd.probeVars {
		probeVars[i] = vars[v]
	}
	err = r.query(ctx, gd.table, gd.probe, probeVars, true, func(rows *sql.Rows) error {
		found = true
		return rows.Scan(st.dest(gd, nil)...)
	})
	return false, st, found, err
}

// dest returns where to scan a row of gd's statement or probe: the count
// of changed rows first when changed is not nil, then the probe's columns.
func (st *state) dest(gd *guard, changed *int64) []any {
	d := make([]any, 0, 3)
	if changed != nil {
		d = append(d, changed)
	}
	d = append(d, &st.Status)
	if gd.extra {
		d = append(d, &st.Extra)
	}
	return d
}

// judgeStatus judges a change of row id of table to the status to, which
// the row may make from any status of from.
func judgeStatus(table, id, to string, from ...string) func(state) error {
	return func(s state) error {
		switch {
		case s.Status == to:
			return nil
		case slices.Contains(from, s.Status):
			return errRetry
		}
		return &TransitionError{Table: table, ID: id, From: s.Status, To: to}
	}
}
