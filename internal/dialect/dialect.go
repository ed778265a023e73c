// Package dialect defines what differs between the databases the package
// supports. Each database has a package of its own beside this one
// (postgres, sqlite, mariadb) holding its SQL, its JSON binding, its
// error translation and its migration, all in one Dialect, and a
// test-only package beneath it holding its test opener (see package
// dialecttest); package dialects lists them. Packages repository and migrate
// use a database only through its Dialect.
package dialect

import (
	"context"
	"database/sql"
	"io/fs"
	"regexp"
	"strconv"
	"strings"

	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/models"
)

// Dialect is one database as the package uses it.
type Dialect struct {
	// Name names the database in this project: its folder of migrate/sql,
	// its tests and its fixtures.
	Name string
	// GORMName is the name GORM's Dialector gives the database
	// (gorm.Dialector.Name), by which a *gorm.DB finds its Dialect.
	GORMName string

	// Guard renders a GuardedUpdate for the database.
	Guard func(g *GuardedUpdate) *Guard
	// AppendMemories appends the canonical JSON array vars[0] to the
	// memories of run vars[2], skipping values already present, and sets
	// updated_at to vars[1]. It changes no row when the run is not running
	// or every value is already present; a run whose memories already hold
	// every value is CodeDone.
	AppendMemories *Guard
	// ExpireCTAEvents times out at most vars[2] pending CTA events whose
	// expires_at is at or before vars[0], setting resolved_at to vars[0]
	// and updated_at to vars[1], and returns their IDs; see Expire for
	// vars[3] and vars[4].
	ExpireCTAEvents Expire
	// Purge deletes old runs with their children; see Purge.
	Purge Purge
	// Snapshot are the options of a transaction whose reads all see one
	// snapshot of the database.
	Snapshot *sql.TxOptions
	// NumbersAsBlob binds top-level JSON numbers as BLOBs (SQLite gives
	// columns declared JSON numeric affinity, which would turn the text of
	// a number into an SQLite number).
	NumbersAsBlob bool
	// ForeignKey recognises the error of a write that referred to a
	// missing parent row, and names the violated constraint if the
	// database says which.
	ForeignKey func(db *gorm.DB, err error) (constraint string, ok bool)
	// AbortsTransaction is true of a database on which a statement that
	// fails aborts its transaction: every further statement in it fails
	// until the rollback, so a failure cannot be looked into from inside.
	AbortsTransaction bool
	// Retry reports whether a single statement that failed with err, sent
	// outside a transaction, changed nothing and may be sent again, as
	// after a deadlock the database broke by rolling the statement back.
	// Nil where no such error exists.
	Retry func(err error) bool
	// Stop is how a statement is stopped on the server when its
	// context ends, for a database whose driver then abandons the
	// connection and leaves the statement running; nil where the driver
	// stops the statement itself and returns once it stopped.
	Stop *Stop
	// TooLarge recognises the error of a statement that would make a
	// value larger than the database builds (MariaDB's
	// max_allowed_packet), which changed nothing; nil where the limit is
	// beyond what the package's own limits let a value reach.
	TooLarge func(err error) bool
	// Session, where set, reads the settings of the connections a
	// Repository works through, once, before its first statement: it
	// returns a *SettingError for settings under which the package
	// cannot keep its promises, and otherwise the limits its statements
	// must stay within. Nil where there is nothing to read.
	Session func(q Query) (*Session, error)
	// PacketTooLarge recognises the error of a statement that the server
	// or the driver refused as larger than the largest packet the server
	// takes, which therefore changed nothing; nil where there is no such
	// limit.
	PacketTooLarge func(err error) bool
	// PreparedLimit recognises the error of a statement the server
	// refused to prepare because it holds as many prepared statements as
	// it allows, across all its connections (MariaDB's
	// max_prepared_stmt_count), which therefore ran nothing; nil where
	// there is no such limit.
	PreparedLimit func(err error) bool

	// Migrate brings the tables of models up to date, as migrate.Up
	// documents, in schema, or where db's connections keep them when
	// schema is empty; files holds the database's own files of
	// migrate/sql.
	Migrate func(db *gorm.DB, schema string, models []any, files fs.FS) error
	// Schemas, where set, is how the database keeps each tenant's tables
	// in a schema of its own; nil for a database that has none (SQLite).
	Schemas *Schemas
}

// Stop is how the package asks a server to stop the statement that one
// connection runs, from outside that connection: the statement's own
// connection then returns its answer, an error if the statement stopped
// before it committed.
type Stop struct {
	// Conn returns the Canceler of conn, a driver connection (as
	// database/sql's Conn.Raw gives it), or false for a driver
	// connection it does not know.
	Conn func(conn any) (Canceler, bool)
	// Exec, where not nil, runs a statement that returns no rows on conn,
	// a driver connection Conn knows, through the driver's own API, and
	// returns the number of rows it changed: what database/sql would do
	// with it, less database/sql's own work.
	Exec func(ctx context.Context, conn any, query string, args []any) (int64, error)
	// ConnID, where Conn is nil, is SQL that returns the server's ID
	// of the connection it runs on. Running, sent on another
	// connection, returns the server's ID of the statement that the
	// connection whose ID is its one var runs, where Kill may stop it
	// now, and no row otherwise; Kill, its one var that statement ID,
	// stops the statement. Ended recognises Kill's error for a
	// statement that ended in between, which stops nothing.
	ConnID, Running, Kill string
	Ended                 func(err error) bool
}

// A Canceler stops the statement of one connection, from outside it.
type Canceler interface {
	// Cancel asks the server to stop the statement the connection runs.
	Cancel(ctx context.Context) error
	// Break makes the statement return at once, with an error, whatever
	// the server does: for a server that does not answer.
	Break()
}

// Expire is how a database runs the CTA sweeper, whose answer must be
// linearizable: a sweep takes effect at one moment, at which every event
// it returns is due and pending, and, unless it returns vars[2] events,
// every due event still pending is among them. So a sweep may pass over
// an event that another call holds (another sweeper, or an answer about
// to commit) only when it claims vars[2] others: the caller of a sweep
// that returns fewer learns, from it, that none is left.
//
// The sweep is either Sweep alone, one statement that times the events out
// and returns their IDs, or, where Sweep is nil (a database without
// UPDATE … RETURNING), a transaction: Skip or Wait locking the due events
// and returning their IDs, then Update timing out those still pending,
// whose vars[5] is the JSON array of their IDs. The vars are now (vars[0]), the
// events' updated_at (vars[1]), the limit (vars[2]), whether to wait for
// every event another call holds (vars[3], a bool) and the limit plus
// one (vars[4]).
type Expire struct {
	// Sweep, on a database where other calls hold events (PostgreSQL),
	// skips the events they hold when vars[3] is false and more events are
	// due than the limit; if it then claims fewer than the limit, it
	// changes nothing and returns one NULL ID instead, and must be sent
	// again with vars[3] true. Otherwise it waits for every due event
	// another call holds.
	Sweep *Statement
	// Backlog counts the due events, up to the limit plus one, read
	// without locking: Skip claims them when there are more than the
	// limit, Wait otherwise, and a sweep that finds none ends there.
	Backlog *Statement
	// Skip claims due events, passing over those other calls hold; a claim
	// of fewer than the limit must be rolled back and made with Wait.
	Skip *Statement
	// Wait claims due events in the order of their deadlines, waiting for
	// those other calls hold.
	Wait   *Statement
	Update *Statement
	// TxOptions are the options of the transaction.
	TxOptions *sql.TxOptions
}

// Statement is SQL with the order in which it takes a call's vars: Vars[i]
// is the index of the call's var that its i-th placeholder binds, or nil
// when it takes them all, in order.
type Statement struct {
	SQL  string
	Vars []int
}

// Args returns the arguments that s binds from a call's vars.
func (s *Statement) Args(vars []any) []any {
	if s.Vars == nil {
		return vars
	}
	args := make([]any, len(s.Vars))
	for i, v := range s.Vars {
		args[i] = vars[v]
	}
	return args
}

// A GuardedUpdate changes one row, named by its ID, only while the row is
// in a state the change may leave (its guard). Whether it changed the row,
// and if not why, is its outcome, which the database computes as a code
// (see CodeDone) from the row's state: a replay (the row is already as
// asked), a refusal (the state the row is in), or a row that changed
// between the guard's check and the read of its state. Each database runs
// it in its own way (see Dialect.Guard).
//
// Its SQL numbers its vars $1, $2, …; the row's ID is the last.
type GuardedUpdate struct {
	Table string
	// Set is the UPDATE's SET list.
	Set string
	// Where is true of a row the update may change.
	Where string
	// Outcome is the WHEN clauses of a CASE that give the outcome code
	// of a row the update changed nothing of, short of a refusal.
	Outcome string
	// Vars is how many vars the statement takes.
	Vars int
}

var varNumber = regexp.MustCompile(`\$(\d+)`)

// NewGuardedUpdate returns the GuardedUpdate of table with the SET list
// set, the guard where and the done predicate done.
func NewGuardedUpdate(table, set, where, done string) *GuardedUpdate {
	g := &GuardedUpdate{Table: table, Set: set, Where: where,
		Outcome: "WHEN " + where + " THEN " + strconv.Itoa(CodeRetry) + " WHEN " + done + " THEN " + strconv.Itoa(CodeDone)}
	for _, m := range varNumber.FindAllStringSubmatch(set+where+done, -1) {
		n, _ := strconv.Atoi(m[1])
		g.Vars = max(g.Vars, n+1)
	}
	return g
}

// Step is the column in which a fenced update records the step of the
// last fenced move of its row; NULL counts as 0.
const Step = "COALESCE(step, 0)"

// NewFencedUpdate returns the fenced form of the guarded update of table
// that assigns set, and touch when it changes the row, with the done
// predicate done and the guard from: a move made at a workflow step, the
// var after those of the unfenced update, which comes before the row's ID.
//
// A row whose step is greater than the move's was moved by a later step,
// which superseded the move: the row is left as it is, and the outcome is
// CodeDone. Otherwise the move follows the guard, and a row it changes, or
// finds already as asked (done) at an earlier step, gets the move's step.
// A row already as asked keeps every other column: touch, such as
// updated_at, is assigned only where the guard matches, and set must
// assign what a done row already holds. Every row the update matches is
// thus a row it changes, as clientFoundRows needs.
//
// Each condition splits on done, so that the statement holds the guard
// and done fewer times, and from is tested only of a row that is not
// done: it names the states the move may leave, and may leave out the
// test that the unfenced guard must make of done, such as the phase of a
// run, which the unfenced guard excludes so that it is false of a row
// already as asked. MariaDB, which prepares each statement at each call,
// pays for its length at every call: spelled out in full, the fenced
// replay took 1.13x to 1.15x the unfenced one's time, and with the test
// of done in from, the fenced move of a run's phase took 1.01x its time
// without it (medians of 9 rounds of 1,000 calls each). A row already as
// asked at an earlier step is one the update matches, so its outcome, like
// a row the guard matches, is CodeRetry.
//
// touch comes first in the SET list, as MariaDB evaluates a single-table
// UPDATE's assignments from left to right, each seeing the ones before:
// the done predicate it repeats must see the row as it was.
func NewFencedUpdate(table, set string, touch []string, from, done string) *GuardedUpdate {
	g := NewGuardedUpdate(table, set+", "+strings.Join(touch, ", "), from, done)
	step := "$" + strconv.Itoa(g.Vars)
	assign := make([]string, 0, len(touch)+2)
	for _, t := range touch {
		column, value, _ := strings.Cut(t, " = ")
		assign = append(assign, column+" = CASE WHEN "+done+" THEN "+column+" ELSE "+value+" END")
	}
	assign = append(assign, set, "step = "+step)
	retry, ok := strconv.Itoa(CodeRetry), strconv.Itoa(CodeDone)
	return &GuardedUpdate{
		Table: table,
		Set:   strings.Join(assign, ", "),
		Where: "CASE WHEN " + done + " THEN " + Step + " < " + step + " ELSE (" + from + ") AND " + Step + " <= " + step + " END",
		Outcome: "WHEN " + done + " THEN CASE WHEN " + Step + " < " + step + " THEN " + retry + " ELSE " + ok + " END" +
			" WHEN " + Step + " > " + step + " THEN " + ok + " WHEN " + from + " THEN " + retry,
		Vars: g.Vars + 1,
	}
}

// Update is the guarded UPDATE.
func (g *GuardedUpdate) Update() string {
	return "UPDATE " + g.Table + " SET " + g.Set + " WHERE " + g.Where + " AND id = " + g.ID()
}

// ID is the var of the row's ID.
func (g *GuardedUpdate) ID() string { return "$" + strconv.Itoa(g.Vars) }

// Code is the outcome code of a row the update changed nothing of, as an
// SQL expression over the row.
func (g *GuardedUpdate) Code() string {
	return "CASE " + g.Outcome + " ELSE " + StatusCode(g.Table, "status") + " END"
}

// The outcome codes of a guarded update: zero for a missing row (no row),
// then these, then CodeRefused plus the index of the row's status in the
// table's Statuses for a refusal.
const (
	CodeDone    = 1 // the update changed the row, or the row is already as asked
	CodeRetry   = 2 // the guard matches the state read: run the update again
	CodeRefused = 3
)

// Statuses lists, per table, the statuses a refusal can name.
var Statuses = map[string][]string{
	"feature_runs":      {string(models.RunRunning), string(models.RunCompleted), string(models.RunFailed)},
	"sandboxes":         {string(models.SandboxCreating), string(models.SandboxRunning), string(models.SandboxPaused), string(models.SandboxStopped), string(models.SandboxFailed)},
	"phase_results":     {string(models.PhaseRunning), string(models.PhasePassed), string(models.PhaseFailed)},
	"agent_invocations": {string(models.InvocationRunning), string(models.InvocationCompleted), string(models.InvocationFailed)},
	"cta_events":        {string(models.CTAPending), string(models.CTACompleted), string(models.CTATimedOut)},
}

// StatusCode is the refusal code of the status column of a row of table.
func StatusCode(table, column string) string {
	var b strings.Builder
	b.WriteString("CASE " + column)
	for i, s := range Statuses[table] {
		b.WriteString(" WHEN '" + s + "' THEN " + strconv.Itoa(CodeRefused+i))
	}
	b.WriteString(" ELSE " + strconv.Itoa(CodeRefused+len(Statuses[table])) + " END")
	return b.String()
}

// Guard is a guarded update as one database runs it.
type Guard struct {
	Table string
	// Statement is the statement to run. Where Probe is nil, the number
	// of rows it reports is the outcome code; otherwise it is the bare
	// guarded UPDATE, and a row it changed means CodeDone.
	Statement
	// Probe, if any, reads the outcome code of a row the statement
	// changed nothing of.
	Probe *Statement
}

// Positional writes the numbered vars $1, $2, … of s as the positional
// placeholder ?, for databases that number none, and returns the statement
// with the var each placeholder binds.
func Positional(s string) *Statement {
	st := &Statement{Vars: []int{}}
	st.SQL = varNumber.ReplaceAllStringFunc(s, func(m string) string {
		n, _ := strconv.Atoi(m[1:])
		st.Vars = append(st.Vars, n-1)
		return "?"
	})
	return st
}

// Numbered writes the numbered vars $1, $2, … of s as SQLite's ?1, ?2, ….
func Numbered(s string) string { return strings.ReplaceAll(s, "$", "?") }
