package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/agentpipeline/persistence/internal/dialect"
	"github.com/agentpipeline/persistence/internal/dialects"
)

// Repository records what the pipeline does. It is safe for concurrent use.
type Repository struct {
	db      *gorm.DB
	dialect *dialect.Dialect
	inserts *inserts
	// stopper stops writes whose context ended, where they can be (see
	// write).
	stopper *stopper
	// step is the workflow step the writes are made at, set by AtStep;
	// zero for unfenced writes.
	step   int64
	atStep bool
	// err is why the Repository cannot work, if it cannot: every method
	// returns it.
	err error
	// server is what the Repository knows of the connections it works
	// through, shared with the Repositories made from it (see ready).
	server *server
	// schema is the tenant schema of a Repository made with InSchema,
	// shared with the Repositories made from it; nil for the tables of
	// db's default schema.
	schema *schema
}

// Option changes how [New] makes a Repository: [InSchema], [StopWait].
type Option struct {
	schema   *string
	stopWait *time.Duration
}

// New returns a [Repository] that works through db: its configuration, its
// plugins and callbacks, its connection pool or transaction. Every
// statement the Repository sends runs through one of db's callback chains
// (Create for inserts, Raw for other writes, Row for statements that return
// rows, Query for reads), so tracing, read/write splitting, loggers and
// callbacks of the caller's see it as they see the caller's own GORM code.
//
// New ignores every query scope on db (Where, Select, Omit, Limit, Order,
// Joins, Preload, Scopes, Unscoped, Table, Model, Clauses and the like), and
// does not wrap single statements in a transaction: each write is one
// atomic statement, but for [Repository.ExpireCTAEvents] on MariaDB, which
// claims and updates in a transaction of its own.
//
// db must be SQLite, PostgreSQL or MariaDB (through gorm.io/driver/mysql);
// with another database every method returns an error saying so. SQLite
// must enforce foreign keys (_foreign_keys=on, or PRAGMA foreign_keys = ON
// on every connection), and MariaDB connections must parse times
// (parseTime=true), use utf8mb4, autocommit and a strict sql_mode without
// EMPTY_STRING_IS_NULL, and must not name columns by their table
// (columnsWithAlias); migrate.Up checks that they do. New sends nothing:
// on MariaDB the Repository reads these settings, and max_allowed_packet,
// in one query before its first statement, and until they are right
// every method returns a [*SettingError], before any write.
//
// On a DryRun session (gorm.Session{DryRun: true}) nothing is sent: every
// method checks its arguments and runs its statements through the callback
// chains, which only render them. Writes then return what a first,
// successful call returns (nil, and the ID for creates); reads find
// nothing ([ErrNotFound], or empty results).
//
// With [InSchema], the Repository works on one tenant's tables; with
// [StopWait], its writes wait longer or shorter for a stopped statement.
func New(db *gorm.DB, opts ...Option) *Repository {
	// A fresh instance drops the caller's scopes; a new session over it
	// gives every chained call a statement of its own.
	clean := db.Session(&gorm.Session{NewDB: true, Initialized: true, SkipDefaultTransaction: true})
	r := &Repository{db: clean.Session(&gorm.Session{NewDB: true}), server: &server{}}
	if r.dialect, r.err = dialects.Of(db); r.err != nil {
		r.err = fmt.Errorf("repository: %w", r.err)
		return r
	}
	if r.schema, r.err = newSchema(r.db, r.dialect, opts); r.err != nil {
		r.err = fmt.Errorf("repository: %w", r.err)
		return r
	}
	if r.stopper, r.err = newStopper(r.db, r.dialect.Stop != nil, opts); r.err != nil {
		r.err = fmt.Errorf("repository: %w", r.err)
		return r
	}
	if r.inserts, r.err = renderInserts(r.db); r.err == nil {
		for _, ins := range []rendered{r.inserts.featureRun, r.inserts.sandbox, r.inserts.phaseResult, r.inserts.agentInvocation, r.inserts.ctaEvent} {
			r.sql(ins.sql)
		}
	}
	return r
}

// DB returns the *gorm.DB the [Repository] works through, for reads and
// queries the Repository does not offer.
//
// It is not scoped to the schema of a Repository made with [InSchema]:
// its statements name tables as the caller writes them, and an unqualified
// name follows the connection's default (PostgreSQL's search_path,
// MariaDB's default database), which may be another tenant's schema, or
// none. Name a tenant's tables with its schema, as in
// db.Table("tenant_a.feature_runs"), in queries of your own.
func (r *Repository) DB() *gorm.DB { return r.db }

// Transaction runs fn in a database transaction and commits it if fn returns
// nil. tx works inside the transaction; it must not be used after fn
// returns. Nested calls use savepoints.
//
// On PostgreSQL a statement the database refuses aborts the transaction: a
// create whose parent is missing ([ErrNotFound]), a lost connection, an
// expired context. fn should then return an error. The [Repository] never
// sends another statement after one failed, so the error fn gets is the
// one that names the cause. Errors found before the database is touched
// ([ErrInvalidInput]) and refused or missing transitions do not abort it.
func (r *Repository) Transaction(ctx context.Context, fn func(tx *Repository) error) error {
	return r.transaction(ctx, nil, fn)
}

// transaction is Transaction with the transaction's options. tx is r,
// step and settings included, working inside the transaction, whose
// writes commit only with it: they pin no connection (see write).
func (r *Repository) transaction(ctx context.Context, opts *sql.TxOptions, fn func(tx *Repository) error) error {
	return r.db.WithContext(ctx).Transaction(func(db *gorm.DB) error {
		tx := *r
		tx.db, tx.stopper = db.Session(&gorm.Session{NewDB: true}), nil
		return fn(&tx)
	}, opts)
}

// AtStep returns a [Repository] that works as r does, through the same
// *gorm.DB, but whose writes are made at step: a number that grows along
// the workflow's history, such as the step's position in its run (DBOS's
// step ID, Inngest's step index, a Temporal activity's position passed in
// by the workflow) or the engine's deterministic time for the step
// (Temporal's workflow.Now in nanoseconds).
//
// Only the two moves that can take a row back are fenced by it:
// [Repository.UpdateFeatureRunPhase] and [Repository.UpdateSandboxStatus].
// A fenced move at step n on a row a move at a later step has already
// changed (the row's step is greater than n) changes nothing and returns
// nil: a later step superseded it, as when a zombie attempt of an earlier
// step writes after later steps ran. Otherwise the move follows its usual
// rules, and when it changes the row or finds it already as asked, the
// row's step becomes n if n is greater. Every other write, and every read,
// ignores step. Writes of a Repository without AtStep are unfenced: they
// follow arrival order and never change a row's step.
//
// A step below 1 makes every write return an [*InputError] on "step".
func (r *Repository) AtStep(step int64) *Repository {
	c := *r
	c.step, c.atStep = step, true
	return &c
}

// now is the timestamp of a write: the db's NowFunc (time.Now unless the
// caller or the dialector set one: gorm.io/driver/mysql's rounds to its
// DefaultDatetimePrecision), in UTC at the microsecond precision that every
// supported database keeps, so what is read back equals what was written.
func (r *Repository) now() time.Time { return r.db.NowFunc().UTC().Truncate(time.Microsecond) }

// start checks what every method checks before it touches the database,
// and, before the Repository's first statement, the connections' settings
// (see ready).
func (r *Repository) start(ctx context.Context) error {
	if r.err != nil {
		return r.err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return r.ready(ctx)
}

// startWrite is start for a write, which also checks the step AtStep set.
func (r *Repository) startWrite(ctx context.Context) error {
	if r.atStep && r.step < 1 {
		return &InputError{Field: "step", Reason: fmt.Sprintf("%d is not a step: steps start at 1", r.step)}
	}
	return r.start(ctx)
}

// primaryHint is the statement setting by which gorm.io/plugin/dbresolver
// (its dbresolver.Write clause) sends a statement to the primary even when
// it is a SELECT. The Repository sets it on the reads that decide a
// write's outcome, which a lagging replica would answer wrongly.
const primaryHint = "gorm:db_resolver:write"

// statement returns a fresh statement of table holding a rendered query
// and its vars, ready for a callback chain. It is the instance GORM's
// chain methods start from (the DB's configuration, connection pool or
// transaction, and hook setting, with an empty statement), made directly:
// through Session it would copy the configuration and a statement more on
// every write. Both live in one allocation.
func (r *Repository) statement(ctx context.Context, table, query string, vars []any) *gorm.DB {
	s := &struct {
		db gorm.DB
		st gorm.Statement
	}{db: gorm.DB{Config: r.db.Config}}
	tx := &s.db
	tx.Statement = &s.st
	*tx.Statement = gorm.Statement{
		DB:        tx,
		ConnPool:  r.db.Statement.ConnPool,
		Context:   ctx,
		Clauses:   map[string]clause.Clause{},
		Table:     table,
		Vars:      vars,
		SkipHooks: r.db.Statement.SkipHooks,
	}
	query = r.sql(query)
	tx.Statement.SQL.Grow(len(query))
	tx.Statement.SQL.WriteString(query)
	return tx
}

// insert runs a rendered INSERT through the Create chain and returns the
// number of rows it inserted.
func (r *Repository) insert(ctx context.Context, table, query string, vars []any) (int64, error) {
	return r.send(ctx, table, query, vars, func(tx *gorm.DB) *gorm.DB { return tx.Callback().Create().Execute(tx) })
}

// exec runs a rendered statement that returns no rows through the Raw
// chain and returns the number of rows it changed.
func (r *Repository) exec(ctx context.Context, table, query string, vars []any) (int64, error) {
	return r.send(ctx, table, query, vars, func(tx *gorm.DB) *gorm.DB { return tx.Callback().Raw().Execute(tx) })
}

// send runs a rendered statement through chain, again while the database
// says it changed nothing and may be sent again (dialect.Dialect.Retry),
// which only a statement outside a transaction may be.
func (r *Repository) send(ctx context.Context, table, query string, vars []any, chain func(*gorm.DB) *gorm.DB) (int64, error) {
	for attempt := 1; ; attempt++ {
		var n int64
		err := r.write(ctx, r.statement(ctx, table, query, vars), true, func(tx *gorm.DB) error {
			tx = chain(tx)
			n = tx.RowsAffected
			return tx.Error
		})
		if err != nil && attempt < maxAttempts && r.dialect.Retry != nil && !r.inTransaction() && r.dialect.Retry(err) && ctx.Err() == nil {
			continue
		}
		return n, r.translate(ctx, err)
	}
}

// inTransaction reports whether the Repository works inside a transaction.
func (r *Repository) inTransaction() bool {
	_, ok := r.db.Statement.ConnPool.(gorm.TxCommitter)
	return ok
}

// query runs a rendered statement that returns rows through the Row chain
// and scans them with scan, one call per row. primary sends a SELECT to the
// primary under read/write splitting. On a DryRun session there are no
// rows.
func (r *Repository) query(ctx context.Context, table, query string, vars []any, primary bool, scan func(*sql.Rows) error) error {
	return r.translate(ctx, rows(r.statement(ctx, table, query, vars), primary, scan))
}

// writeRows is query for a statement that writes and returns rows, such as
// an UPDATE … RETURNING, which it sends to the primary.
func (r *Repository) writeRows(ctx context.Context, table, query string, vars []any, scan func(*sql.Rows) error) error {
	return r.translate(ctx, r.write(ctx, r.statement(ctx, table, query, vars), false, func(tx *gorm.DB) error { return rows(tx, true, scan) }))
}

// rows runs tx through the Row chain and scans the rows it returns.
func rows(tx *gorm.DB, primary bool, scan func(*sql.Rows) error) error {
	if primary {
		tx.Statement.Settings.Store(primaryHint, struct{}{})
	}
	tx.Statement.Settings.Store("rows", true)
	tx = tx.Callback().Row().Execute(tx)
	if tx.Error != nil {
		return tx.Error
	}
	rows, ok := tx.Statement.Dest.(*sql.Rows)
	if !ok {
		return nil
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// scan runs a read built by GORM, through the Query chain, into dest. It may
// go to a replica under read/write splitting.
func (r *Repository) scan(ctx context.Context, dest any, query string, args ...any) error {
	return r.translate(ctx, r.db.WithContext(ctx).Raw(r.sql(query), args...).Scan(dest).Error)
}

// dryRun reports whether the Repository only renders statements.
func (r *Repository) dryRun() bool { return r.db.DryRun }

// translate makes the errors the package can recognise match its own
// sentinels or the context's error, whatever the driver.
func (r *Repository) translate(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return fmt.Errorf("%w: %w", ctxErr, err)
	}
	if constraint, ok := r.dialect.ForeignKey(r.db, err); ok {
		return &foreignKeyError{constraint: constraint}
	}
	if r.dialect.PacketTooLarge != nil && r.dialect.PacketTooLarge(err) {
		// The limit read before may be stale: read it again next time.
		r.server.session.Store(nil)
		return &packetError{arg: -1, refused: err}
	}
	if r.dialect.PreparedLimit != nil && r.dialect.PreparedLimit(err) {
		return fmt.Errorf("%w: %w", ErrPreparedStatementLimit, err)
	}
	return err
}
