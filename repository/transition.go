package repository

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/agentpipeline/persistence/internal/dialect"
	"github.com/agentpipeline/persistence/internal/dialects"
)

// newGuardedUpdate returns a dialect.GuardedUpdate of table, rendered for
// every supported database when the package loads.
func newGuardedUpdate(table, set, where, done string) map[*dialect.Dialect]*dialect.Guard {
	return render(dialect.NewGuardedUpdate(table, set, where, done))
}

// render renders g for every supported database.
func render(g *dialect.GuardedUpdate) map[*dialect.Dialect]*dialect.Guard {
	rendered := make(map[*dialect.Dialect]*dialect.Guard, len(dialects.All))
	for _, d := range dialects.All {
		rendered[d] = d.Guard(g)
	}
	return rendered
}

// move is a guarded update that can take a row back, which AtStep fences:
// its unfenced and fenced forms (see dialect.NewFencedUpdate), rendered
// for every supported database.
type move struct {
	unfenced, fenced map[*dialect.Dialect]*dialect.Guard
}

// newMove returns the move of a row of table that assigns set and touch,
// with the done predicate done. where is the unfenced form's guard, which
// must be false of a row already as asked; from is the fenced form's,
// which it tests only of a row not done, and which may thus leave out
// where's test of done.
func newMove(table, set string, touch []string, where, from, done string) move {
	return move{
		unfenced: newGuardedUpdate(table, set+", "+strings.Join(touch, ", "), where, done),
		fenced:   render(dialect.NewFencedUpdate(table, set, touch, from, done)),
	}
}

// move runs m as transition does, fenced at r's step when r has one; vars
// are those of the unfenced update, the row's ID last.
func (r *Repository) move(ctx context.Context, m move, vars []any, to, detail string) error {
	if !r.atStep {
		return r.transition(ctx, m.unfenced[r.dialect], vars, to, detail)
	}
	id := vars[len(vars)-1]
	vars = append(vars[:len(vars)-1:len(vars)-1], r.step, id)
	return r.transition(ctx, m.fenced[r.dialect], vars, to, detail)
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
func (r *Repository) transition(ctx context.Context, gd *dialect.Guard, vars []any, to, detail string) error {
	for range maxAttempts {
		code, err := r.outcome(ctx, gd, vars)
		switch {
		case err != nil:
			return err
		case r.dryRun() || code == dialect.CodeDone:
			return nil
		case code == 0:
			return ErrNotFound
		case code == dialect.CodeRetry:
			continue
		}
		from := "unknown"
		if i := int(code) - dialect.CodeRefused; i < len(dialect.Statuses[gd.Table]) {
			from = dialect.Statuses[gd.Table][i]
		}
		return &TransitionError{Table: gd.Table, ID: fmt.Sprint(vars[len(vars)-1]), From: from, To: to, Detail: detail}
	}
	return fmt.Errorf("%s: gave up after %d attempts: the row kept changing, or its updates are being skipped", gd.Table, maxAttempts)
}

// outcome runs gd once and returns its outcome code.
func (r *Repository) outcome(ctx context.Context, gd *dialect.Guard, vars []any) (int64, error) {
	if err := r.fit(ctx, &gd.Statement, vars); err != nil {
		return 0, err
	}
	n, err := r.exec(ctx, gd.Table, gd.SQL, gd.Args(vars))
	switch {
	case err != nil || gd.Probe == nil:
		return n, err
	case n > 0:
		return dialect.CodeDone, nil
	case r.dryRun():
		return 0, nil
	}
	if err := r.fit(ctx, gd.Probe, vars); err != nil {
		return 0, err
	}
	var code int64
	err = r.query(ctx, gd.Table, gd.Probe.SQL, gd.Probe.Args(vars), true, func(rows *sql.Rows) error { return rows.Scan(&code) })
	return code, err
}
