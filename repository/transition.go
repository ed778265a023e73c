package repository

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/agentpipeline/persistence/models"
)

// A guardedUpdate changes one row, named by its ID, only while the row is
// in a state the change may leave (its guard). Whether it changed the row,
// and if not why, is its outcome, which the database computes as a code
// (see outcome codes) from the row's state: a replay (the row is already
// as asked), a refusal (the state the row is in), or a row that changed
// between the guard's check and the read of its state. Each database runs
// it in its own way (see dialect.guard), rendered once when the package
// loads.
//
// Its SQL numbers its vars $1, $2, …; the row's ID is the last.
type guardedUpdate struct {
	table string
	// set is the UPDATE's SET list.
	set string
	// guard is true of a row the update may change.
	guard string
	// done is true of a row already as the call asks.
	done string
	// vars is how many vars the statement takes.
	vars int
	// rendered holds the statements of each database.
	rendered map[*dialect]*guard
}

// The outcome codes of a guarded update: zero for a missing row (no row),
// then these, then codeRefused plus the index of the row's status in the
// table's statuses for a refusal.
const (
	codeDone    = 1 // the update changed the row, or the row is already as asked
	codeRetry   = 2 // the guard matches the state read: run the update again
	codeRefused = 3
)

// statuses lists, per table, the statuses a refusal can name.
var statuses = map[string][]string{
	"feature_runs":      {string(models.RunRunning), string(models.RunCompleted), string(models.RunFailed)},
	"sandboxes":         {string(models.SandboxCreating), string(models.SandboxRunning), string(models.SandboxPaused), string(models.SandboxStopped), string(models.SandboxFailed)},
	"phase_results":     {string(models.PhaseRunning), string(models.PhasePassed), string(models.PhaseFailed)},
	"agent_invocations": {string(models.InvocationRunning), string(models.InvocationCompleted), string(models.InvocationFailed)},
	"cta_events":        {string(models.CTAPending), string(models.CTACompleted), string(models.CTATimedOut)},
}

// guard is a guarded update as one database runs it.
type guard struct {
	table string
	// sql is the statement to run. Where probe is empty, the number of
	// rows it reports is the outcome code; otherwise it is the bare
	// guarded UPDATE, and a row it changed means codeDone.
	sql string
	// probe, if any, reads the outcome code of a row sql changed nothing
	// of, from probeVars of sql's vars (all of them when nil).
	probe     string
	probeVars []int
}

var varNumber = regexp.MustCompile(`\$(\d+)`)

func newGuardedUpdate(table, set, guardSQL, done string) *guardedUpdate {
	g := &guardedUpdate{table: table, set: set, guard: guardSQL, done: done, rendered: make(map[*dialect]*guard, len(dialects))}
	for _, m := range varNumber.FindAllStringSubmatch(set+guardSQL+done, -1) {
		n, _ := strconv.Atoi(m[1])
		g.vars = max(g.vars, n+1)
	}
	for _, d := range dialects {
		g.rendered[d] = d.guard(g)
	}
	return g
}

// update is the guarded UPDATE.
func (g *guardedUpdate) update() string {
	return "UPDATE " + g.table + " SET " + g.set + " WHERE " + g.guard + " AND id = " + g.id()
}

// id is the var of the row's ID.
func (g *guardedUpdate) id() string { return "$" + strconv.Itoa(g.vars) }

// code is the outcome code of a row the update changed nothing of, as an
// SQL expression over the row.
func (g *guardedUpdate) code() string {
	return "CASE WHEN " + g.done + " THEN " + strconv.Itoa(codeDone) + " WHEN " + g.guard + " THEN " + strconv.Itoa(codeRetry) +
		" ELSE " + statusCode(g.table, "status") + " END"
}

// statusCode is the refusal code of the status column of a row of table.
func statusCode(table, column string) string {
	var b strings.Builder
	b.WriteString("CASE " + column)
	for i, s := range statuses[table] {
		b.WriteString(" WHEN '" + s + "' THEN " + strconv.Itoa(codeRefused+i))
	}
	b.WriteString(" ELSE " + strconv.Itoa(codeRefused+len(statuses[table])) + " END")
	return b.String()
}

// maxAttempts bounds how often a transition runs again after the row kept
// changing under it. Each attempt follows a change that another call
// committed, so reaching it takes a storm of writes to one row, or
// something outside the package (such as a trigger) that silently skips
// updates.
const maxAttempts = 64

// transition runs the guarded update gd with vars, the row's ID last, and
// returns its outcome: nil when it changed the row or the row is already
// as asked, ErrNotFound for a missing row, and for a refusal a
// *TransitionError from the row's status to to, with detail. When the
// guard matches the state read, the row changed under the statement, which
// runs again.
//
// The answer is linearizable: the state it is read from is the row as it
// was at one instant during the call, at which the call changed nothing.
func (r *Repository) transition(ctx context.Context, gd *guard, vars []any, to, detail string) error {
	for range maxAttempts {
		code, err := r.outcome(ctx, gd, vars)
		switch {
		case err != nil:
			return err
		case r.dryRun() || code == codeDone:
			return nil
		case code == 0:
			return ErrNotFound
		case code == codeRetry:
			continue
		}
		from := "unknown"
		if i := int(code) - codeRefused; i < len(statuses[gd.table]) {
			from = statuses[gd.table][i]
		}
		return &TransitionError{Table: gd.table, ID: fmt.Sprint(vars[len(vars)-1]), From: from, To: to, Detail: detail}
	}
	return fmt.Errorf("%s: gave up after %d attempts: the row kept changing, or its updates are being skipped", gd.table, maxAttempts)
}

// outcome runs gd once and returns its outcome code.
func (r *Repository) outcome(ctx context.Context, gd *guard, vars []any) (int64, error) {
	n, err := r.exec(ctx, gd.table, gd.sql, vars)
	switch {
	case err != nil || gd.probe == "":
		return n, err
	case n > 0:
		return codeDone, nil
	case r.dryRun():
		return 0, nil
	}
	probeVars := vars
	if gd.probeVars != nil {
		probeVars = make([]any, len(gd.probeVars))
		for i, v := range gd.probeVars {
			probeVars[i] = vars[v]
		}
	}
	var code int64
	err = r.query(ctx, gd.table, gd.probe, probeVars, true, func(rows *sql.Rows) error { return rows.Scan(&code) })
	return code, err
}
