package dbtest

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/internal/dialect"
)

// Recorder records, while started, every statement GORM runs and every
// transaction it begins on a database opened by this package.
type Recorder struct {
	mu     sync.Mutex
	on     bool
	stmts  []string
	begins int
}

// Start forgets what was recorded and starts recording.
func (r *Recorder) Start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on, r.stmts, r.begins = true, nil, 0
}

// Stop stops recording and returns the statements run and the number of
// transactions begun since Start.
func (r *Recorder) Stop() (stmts []string, begins int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on = false
	return r.stmts, r.begins
}

// RecorderOf returns the Recorder of a database opened by this package.
func RecorderOf(db *gorm.DB) *Recorder {
	return db.Config.Logger.(*Recorder)
}

// LogMode implements logger.Interface.
func (r *Recorder) LogMode(logger.LogLevel) logger.Interface { return r }

// Info implements logger.Interface.
func (r *Recorder) Info(context.Context, string, ...any) {}

// Warn implements logger.Interface.
func (r *Recorder) Warn(context.Context, string, ...any) {}

// Error implements logger.Interface.
func (r *Recorder) Error(context.Context, string, ...any) {}

// Trace implements logger.Interface; GORM calls it after each statement.
func (r *Recorder) Trace(_ context.Context, _ time.Time, fc func() (string, int64), _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.on {
		sql, _ := fc()
		r.stmts = append(r.stmts, sql)
	}
}

func (r *Recorder) begin() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.on {
		r.begins++
	}
}

// pool is the connection pool GORM sees: the real one, with BeginTx counted.
type pool struct {
	*sql.DB
	rec *Recorder
}

// BeginTx counts the transaction and begins it on the real pool.
func (p pool) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	p.rec.begin()
	return p.DB.BeginTx(ctx, opts)
}

// GetDBConn lets gorm.DB.DB return the real pool.
func (p pool) GetDBConn() (*sql.DB, error) { return p.DB, nil }

func open(t testing.TB, d *dialect.Dialect, sqlDB *sql.DB) *gorm.DB {
	t.Helper()
	rec := &Recorder{}
	db, err := gorm.Open(TestOf(d).Dialector(pool{DB: sqlDB, rec: rec}), &gorm.Config{Logger: rec})
	if err != nil {
		t.Fatalf("open gorm: %v", err)
	}
	return db
}
