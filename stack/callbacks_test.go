package stack_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/plugin/opentelemetry/tracing"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// TestEveryStatementThroughCallbacks checks that every statement a write
// sends runs through one of GORM's callback chains: a callback of the
// user's on each chain, and the OpenTelemetry plugin's spans, see exactly
// the statements that reach the driver, as many as the write's path needs.
func TestEveryStatementThroughCallbacks(t *testing.T) {
	t.Parallel()
	eachDatabase(t, func(t *testing.T, d *database) {
		spans := tracetest.NewSpanRecorder()
		db := d.open(&gorm.Config{})
		require.NoError(t, db.Use(tracing.NewPlugin(
			tracing.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))),
			tracing.WithoutQueryVariables(), tracing.WithoutMetrics())))
		var (
			mu   sync.Mutex
			seen []string
		)
		see := func(tx *gorm.DB) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, tx.Statement.SQL.String())
		}
		afterEveryChain(t, db, see)
		repo := repository.New(db)
		// On MariaDB a Repository reads its connections' settings before
		// its first statement, through the Row chain like any read.
		_, err := repo.GetFeatureRun(d.ctx, uuid.New())
		require.ErrorIs(t, err, repository.ErrNotFound)

		each(t, func(t *testing.T, w write, p path, prepare func(*fixture) call) {
			c := prepare(d.fixture(t))
			d.pool.take()
			mu.Lock()
			seen = nil
			mu.Unlock()
			before := len(spans.Ended())

			checkOutcome(t, p, c(d.ctx, repo))

			sent := d.pool.take()
			assert.Len(t, sent, statements(d.name, w, p), "statements sent: %q", sent)
			mu.Lock()
			assert.Equal(t, sent, seen, "the callbacks saw every statement sent")
			mu.Unlock()
			var traced []string
			for _, s := range spans.Ended()[before:] {
				for _, a := range s.Attributes() {
					if a.Key == "db.query.text" {
						traced = append(traced, a.Value.AsString())
					}
				}
			}
			assert.Equal(t, sent, traced, "a span carries every statement sent")
		})
	})
}

// afterEveryChain registers see last on each of db's callback chains.
func afterEveryChain(t *testing.T, db *gorm.DB, see func(*gorm.DB)) {
	t.Helper()
	cb := db.Callback()
	for name, p := range map[string]interface {
		Register(string, func(*gorm.DB)) error
	}{
		"create": cb.Create().After("*"), "query": cb.Query().After("*"), "update": cb.Update().After("*"),
		"delete": cb.Delete().After("*"), "row": cb.Row().After("*"), "raw": cb.Raw().After("*"),
	} {
		require.NoError(t, p.Register("test:see:"+name, see))
	}
}

// TestCallbackQueriesDuringWrite checks that a callback of the user's that
// sends a query through the statement's connection pool in the middle of a
// write, as a plugin may, gets its answer, and the write its outcome, on
// every path of every write. On PostgreSQL the connection a write pins is
// lent to pgx while its statement runs, and such a query runs on another
// connection of the pool.
func TestCallbackQueriesDuringWrite(t *testing.T) {
	t.Parallel()
	eachDatabase(t, func(t *testing.T, d *database) {
		db, err := gorm.Open(dbtest.TestOf(d.dialect).Dialector(d.sqlDB), &gorm.Config{Logger: logger.Discard})
		require.NoError(t, err)
		var asked, answered atomic.Int64
		ask := func(tx *gorm.DB) {
			asked.Add(1)
			var one int
			if err := tx.Statement.ConnPool.QueryRowContext(tx.Statement.Context, "SELECT 1").Scan(&one); err == nil && one == 1 {
				answered.Add(1)
			}
		}
		require.NoError(t, db.Callback().Create().Before("gorm:create").Register("test:ask", ask))
		require.NoError(t, db.Callback().Raw().Before("gorm:raw").Register("test:ask", ask))
		repo := repository.New(db)
		each(t, func(t *testing.T, w write, p path, prepare func(*fixture) call) {
			c := prepare(d.fixture(t))
			before := asked.Load()
			done := make(chan error, 1)
			go func() { done <- c(t.Context(), repo) }()
			select {
			case err := <-done:
				checkOutcome(t, p, err)
			case <-time.After(time.Minute):
				t.Fatal("the write did not return within a minute")
			}
			assert.Positive(t, asked.Load()-before, "the callback ran")
			assert.Equal(t, asked.Load(), answered.Load(), "every query of the callback's was answered")
		})
	})
}

// seenQueries records the SQL of every statement pgx sends, as a
// pgx.QueryTracer of the connections.
type seenQueries struct{ statementLog }

func (s *seenQueries) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	s.record(data.SQL)
	return ctx
}

func (s *seenQueries) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestPinnedWritesThroughCallbacks checks, on PostgreSQL over a plain
// database/sql pool, where a write whose context can end pins a
// connection and runs its statement on pgx's connection directly, that a
// callback of the user's on each chain sees exactly the statements that
// reach pgx, on every path of every write.
func TestPinnedWritesThroughCallbacks(t *testing.T) {
	t.Parallel()
	cfg, err := pgx.ParseConfig(dbtest.PostgresDSN())
	require.NoError(t, err)
	cfg.Database = dbtest.PostgresDatabase(t)
	traced := &seenQueries{}
	cfg.Tracer = traced
	sqlDB := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { _ = sqlDB.Close() })
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	require.NoError(t, migrate.Up(t.Context(), db))
	seen := &statementLog{}
	afterEveryChain(t, db, func(tx *gorm.DB) { seen.record(tx.Statement.SQL.String()) })
	repo := repository.New(db)
	each(t, func(t *testing.T, w write, p path, prepare func(*fixture) call) {
		c := prepare(&fixture{t: t, ctx: t.Context(), repo: repo})
		traced.take()
		seen.take()
		checkOutcome(t, p, c(t.Context(), repo))
		sent := traced.take()
		assert.NotEmpty(t, sent, "the write sent a statement")
		assert.Equal(t, sent, seen.take(), "the callbacks saw every statement sent")
	})
}
