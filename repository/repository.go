package repository

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Repository records what the pipeline does. It is safe for concurrent use.
type Repository struct {
	db      *gorm.DB
	dialect *dialect
}

// New returns a Repository that writes through db. The caller keeps
// ownership of db; its configuration is kept, except that single statements
// are not wrapped in a transaction (each write is one atomic statement).
//
// db must be PostgreSQL or SQLite; with another database every method
// returns an error saying so. SQLite must enforce foreign keys
// (_foreign_keys=on, or PRAGMA foreign_keys = ON on every connection);
// migrate.Up checks that it does.
func New(db *gorm.DB) *Repository {
	return &Repository{
		db:      db.Session(&gorm.Session{NewDB: true, SkipDefaultTransaction: true}),
		dialect: dialectOf(db),
	}
}

// DB returns the *gorm.DB the Repository writes through, for reads and
// queries the Repository does not offer.
func (r *Repository) DB() *gorm.DB { return r.db }

// Transaction runs fn in a database transaction and commits it if fn returns
// nil. tx writes inside the transaction; it must not be used after fn
// returns. Nested calls use savepoints.
//
// On PostgreSQL a statement the database refuses aborts the transaction: a
// create whose parent is missing (ErrNotFound), a lost connection, an
// expired context. fn should then return an error. Errors found before
// the database is touched (ErrInvalidInput) and refused or missing
// transitions do not abort it.
func (r *Repository) Transaction(ctx context.Context, fn func(tx *Repository) error) error {
	return r.db.WithContext(ctx).Transaction(func(db *gorm.DB) error {
		return fn(&Repository{db: db, dialect: r.dialect})
	})
}

// now is the timestamp of a write, at the microsecond precision that every
// supported database keeps, so what is read back equals what was written.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// start checks what every method checks before it touches the database.
func (r *Repository) start(ctx context.Context) error {
	if r.dialect.err != nil {
		return r.dialect.err
	}
	return ctx.Err()
}

// create inserts row unless a row with its primary key exists.
func (r *Repository) create(ctx context.Context, row any) error {
	return r.translate(ctx, r.db.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(row).Error)
}

// exec runs one statement, already in the dialect's placeholder style, and
// returns the number of rows it changed.
//
// It hands the statement straight to the connection pool (or to the
// transaction, inside Transaction): GORM's statement building would
// roughly double the client-side cost of a write. GORM's logger still sees
// every statement; callbacks registered on Exec do not.
func (r *Repository) exec(ctx context.Context, query string, args ...any) (int64, error) {
	begin := time.Now()
	res, err := r.db.Statement.ConnPool.ExecContext(ctx, query, args...)
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	r.db.Logger.Trace(ctx, begin, func() (string, int64) {
		return r.db.Dialector.Explain(query, args...), n
	}, err)
	return n, r.translate(ctx, err)
}

// scan runs one query and scans its rows into dest.
func (r *Repository) scan(ctx context.Context, dest any, query string, args ...any) error {
	return r.translate(ctx, r.db.WithContext(ctx).Raw(query, args...).Scan(dest).Error)
}

// errForeignKey marks a write that referred to a parent row that is missing.
var errForeignKey = errors.New("foreign key violated")

// translate makes the errors the package can recognise match its own
// sentinels or the context's error, whatever the driver.
func (r *Repository) translate(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return fmt.Errorf("%w: %w", ctxErr, err)
	}
	if t, ok := r.db.Dialector.(gorm.ErrorTranslator); ok {
		if errors.Is(t.Translate(err), gorm.ErrForeignKeyViolated) {
			return errForeignKey
		}
	}
	return err
}

// transition runs a guarded UPDATE that moves the row table.id to the status
// to. When the guard matched no row it reads the row's status, to tell a
// missing row (ErrNotFound) from a replay (already in to: nil) from a refused
// transition (ErrInvalidTransition).
func (r *Repository) transition(ctx context.Context, table string, id any, to string, query string, args ...any) error {
	if query != "" {
		n, err := r.exec(ctx, query, args...)
		if err != nil || n > 0 {
			return err
		}
	}
	var status []string
	if err := r.scan(ctx, &status, "SELECT status FROM "+table+" WHERE id = ?", id); err != nil {
		return err
	}
	switch {
	case len(status) == 0:
		return ErrNotFound
	case status[0] == to:
		return nil
	}
	return &TransitionError{Table: table, ID: fmt.Sprint(id), From: status[0], To: to}
}
