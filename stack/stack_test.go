package stack_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"

	_ "github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/dialect"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// database is one test's fresh, migrated database, reopened with a GORM
// configuration of the test's own so that its plugins and callbacks touch
// nothing else.
type database struct {
	name    string
	dialect *dialect.Dialect
	t       testing.TB
	ctx     context.Context
	// plain is a Repository on the database without the test's plugins,
	// for preparing rows.
	plain *repository.Repository
	sqlDB *sql.DB
	pool  *countingPool
}

// eachDatabase runs fn on a fresh, migrated database of every supported
// kind.
func eachDatabase(t *testing.T, fn func(t *testing.T, d *database)) {
	for _, db := range dbtest.All() {
		t.Run(db.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, openDatabase(t, db))
		})
	}
}

// openDatabase opens a fresh, migrated database of kind db for t.
func openDatabase(t *testing.T, db dbtest.Database) *database {
	gdb := db.Open(t)
	require.NoError(t, migrate.Up(t.Context(), gdb))
	sqlDB, err := gdb.DB()
	require.NoError(t, err)
	return &database{name: db.Name, dialect: db.Dialect, t: t, ctx: t.Context(), plain: repository.New(gdb), sqlDB: sqlDB, pool: &countingPool{db: sqlDB}}
}

// open returns a new *gorm.DB over the database's connections, through a
// pool that counts what it is sent, with cfg's settings.
func (d *database) open(cfg *gorm.Config) *gorm.DB {
	d.t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = logger.Discard
	}
	db, err := gorm.Open(dbtest.TestOf(d.dialect).Dialector(d.pool), cfg)
	require.NoError(d.t, err)
	return db
}

// fixture returns a fixture that prepares rows with the plain Repository.
func (d *database) fixture(t testing.TB) *fixture {
	return &fixture{t: t, ctx: d.ctx, repo: d.plain}
}

// countingPool is the connection pool GORM sees: the database's own, with
// every statement sent to it recorded. It is what reaches the driver, so
// a statement that skipped GORM's callback chains shows here only.
type countingPool struct {
	db *sql.DB
	statementLog
}

// statementLog records the SQL of statements, from any goroutine.
type statementLog struct {
	mu  sync.Mutex
	sql []string
}

func (l *statementLog) record(query string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sql = append(l.sql, query)
}

// take returns the statements recorded since the last take.
func (l *statementLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.sql
	l.sql = nil
	return s
}

// PrepareContext implements gorm.ConnPool.
func (p *countingPool) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	p.record(query)
	return p.db.PrepareContext(ctx, query)
}

// ExecContext implements gorm.ConnPool.
func (p *countingPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	p.record(query)
	return p.db.ExecContext(ctx, query, args...)
}

// QueryContext implements gorm.ConnPool.
func (p *countingPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	p.record(query)
	return p.db.QueryContext(ctx, query, args...)
}

// QueryRowContext implements gorm.ConnPool.
func (p *countingPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	p.record(query)
	return p.db.QueryRowContext(ctx, query, args...)
}

// BeginTx implements gorm.TxBeginner.
func (p *countingPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	return p.db.BeginTx(ctx, opts)
}

// GetDBConn lets gorm.DB.DB return the real pool.
func (p *countingPool) GetDBConn() (*sql.DB, error) { return p.db, nil }

// statements is how many statements a write sends on a path: one, but for
// a transition on SQLite that changes nothing, which reads the row's
// state in a second statement.
func statements(db string, w write, p path) int {
	if p == happy || db == "postgres" || strings.HasPrefix(w.name, "Create") {
		return 1
	}
	return 2
}
