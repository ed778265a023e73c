package repository_test

import (
	"context"
	"database/sql"
	"net/url"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/dialect"
	"github.com/agentpipeline/persistence/internal/dialect/mariadb"
	"github.com/agentpipeline/persistence/internal/dialect/mariadb/mariadbtest"
	"github.com/agentpipeline/persistence/internal/dialect/postgres"
	"github.com/agentpipeline/persistence/internal/dialect/postgres/postgrestest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/persistencetest"
	"github.com/agentpipeline/persistence/repository"
)

// throughProxy opens a migrated database of d's kind on its test server,
// reached through a dbtest.Proxy.
func throughProxy(t *testing.T, d *dialect.Dialect) (*gorm.DB, *dbtest.Proxy) {
	t.Helper()
	var sqlDB *sql.DB
	var f *dbtest.Proxy
	switch d {
	case &postgres.Dialect:
		_, schema := postgrestest.FreshSchema(t, dbtest.PostgresDSN(), nil)
		u, err := url.Parse(dbtest.PostgresDSN())
		require.NoError(t, err)
		f = dbtest.NewProxy(t, u.Host)
		u.Host = f.Addr()
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		cfg, err := pgx.ParseConfig(u.String())
		require.NoError(t, err)
		// pgx's database/sql driver pings a connection it hands out
		// again after a second idle; through a frozen proxy that ping,
		// and not the write's statement, would wait for the silent
		// server, and the write would return at its context's end.
		sqlDB = stdlib.OpenDB(*cfg, stdlib.OptionShouldPing(func(context.Context, stdlib.ShouldPingParams) bool { return false }))
	case &mariadb.Dialect:
		cfg, err := mariadb.Config(dbtest.MariaDBDSN())
		require.NoError(t, err)
		cfg.DBName = mariadbtest.Database(t, dbtest.MariaDBServer(t))
		f = dbtest.NewProxy(t, cfg.Addr)
		cfg.Addr = f.Addr()
		connector, err := mysql.NewConnector(cfg)
		require.NoError(t, err)
		sqlDB = sql.OpenDB(connector)
	}
	t.Cleanup(func() { _ = sqlDB.Close() })
	db, err := gorm.Open(dbtest.TestOf(d).Dialector(sqlDB), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	require.NoError(t, migrate.Up(t.Context(), db))
	return db, f
}

// contextEnd is a way a call's context ends: ctx returns a context that
// ends so, and err is the error the call must then return.
type contextEnd struct {
	name string
	ctx  func() (context.Context, context.CancelFunc)
	err  error
}

// contextEnds returns the two ways a context ends, each after after: by
// its deadline, and cancelled without one.
func contextEnds(t *testing.T, after time.Duration) []contextEnd {
	return []contextEnd{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(t.Context(), after)
		}, context.DeadlineExceeded},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(after, cancel)
			return ctx, cancel
		}, context.Canceled},
	}
}

// TestWriteReturnsFromASilentServer checks that a write whose context ends
// while its server has gone silent returns, with the context's error, once
// its request to stop the statement went unanswered for the stop wait: the
// package then breaks the statement's connection, where a driver would
// have abandoned it at the context's end. On PostgreSQL it also checks
// that the package leaves the cancel request, a connection of its own,
// open for the server to answer: PgBouncer before 1.19.1 exits when a
// client closes a cancel request it is still forwarding. Its writes wait
// 300 ms ([repository.StopWait]).
func TestWriteReturnsFromASilentServer(t *testing.T) {
	t.Parallel()
	const wait = 300 * time.Millisecond
	for _, d := range []*dialect.Dialect{&postgres.Dialect, &mariadb.Dialect} {
		t.Run(d.Name, func(t *testing.T) {
			db, f := throughProxy(t, d)
			repo := repository.New(db, repository.StopWait(wait))
			runID, err := repo.CreateFeatureRun(t.Context(), repository.NewFeatureRun{Phase: "plan"})
			require.NoError(t, err)
			for _, end := range contextEnds(t, 100*time.Millisecond) {
				t.Run(end.name, func(t *testing.T) {
					// A connection of the pool, idle and open, is what
					// the write pins.
					require.NoError(t, repo.UpdateFeatureRunPhase(t.Context(), runID, "plan"))
					hungUp := f.HungUp()
					f.Freeze(true)
					defer f.Freeze(false)
					// Taken before the context's timer starts, so that
					// the time measured is never shorter than the wait.
					start := time.Now()
					ctx, cancel := end.ctx()
					defer cancel()
					returned := make(chan error, 1)
					go func() { returned <- repo.UpdateFeatureRunPhase(ctx, runID, "implement-"+uuid.NewString()[:8]) }()
					select {
					case err := <-returned:
						took := time.Since(start)
						require.ErrorIs(t, err, end.err)
						require.GreaterOrEqual(t, took, 100*time.Millisecond+wait, "returned before the stop wait ended: %v", err)
						require.Less(t, took, 100*time.Millisecond+wait+2*time.Second, "returned long after the stop wait")
						if d == &postgres.Dialect {
							require.Never(t, func() bool { return f.HungUp() != hungUp }, 300*time.Millisecond, 10*time.Millisecond,
								"the package closed its cancel request before the server answered it")
						}
					case <-time.After(100*time.Millisecond + wait + 5*time.Second):
						f.Close()
						err := <-returned
						t.Fatalf("the write did not return while its server was silent; once the proxy closed, it returned %v", err)
					}
				})
			}
		})
	}
}

// TestStoppedWriteReturnsOnceStopped checks that a write whose context
// ends while it waits for a row lock returns as soon as the server has
// stopped its statement: the stop must learn that the statement answered,
// and not go on asking until the stop wait ends. The row keeps its phase
// once the lock is freed. Its writes wait 20 s ([repository.StopWait]),
// so that a stop that never learns of the answer shows as a write
// returning late.
func TestStoppedWriteReturnsOnceStopped(t *testing.T) {
	t.Parallel()
	for _, d := range dbtest.All() {
		if d.Dialect.Stop == nil {
			continue // the driver stops the statement itself (SQLite)
		}
		t.Run(d.Name, func(t *testing.T) {
			db := d.Open(t)
			require.NoError(t, migrate.Up(t.Context(), db))
			repo := repository.New(db, repository.StopWait(20*time.Second))
			for _, end := range contextEnds(t, 200*time.Millisecond) {
				t.Run(end.name, func(t *testing.T) {
					runID, err := repo.CreateFeatureRun(t.Context(), repository.NewFeatureRun{Phase: "plan"})
					require.NoError(t, err)
					holder := db.WithContext(t.Context()).Begin()
					require.NoError(t, holder.Error)
					require.NoError(t, holder.Exec("SELECT id FROM feature_runs WHERE id = ? FOR UPDATE", runID.String()).Error)
					ctx, cancel := end.ctx()
					defer cancel()
					start := time.Now()
					err = repo.UpdateFeatureRunPhase(ctx, runID, "implement")
					took := time.Since(start)
					require.NoError(t, holder.Rollback().Error)
					require.ErrorIs(t, err, end.err)
					require.Less(t, took, 200*time.Millisecond+5*time.Second, "the write returned %v after it started, its context having ended after 200 ms: the stop went on after the statement stopped", took)
					run, err := repo.GetFeatureRun(t.Context(), runID)
					require.NoError(t, err)
					require.Equal(t, "plan", run.Phase, "the stopped write changed the row")
				})
			}
		})
	}
}

// TestStopWaitMustBePositive checks that a Repository made with a wait
// that is not positive refuses every call with an InputError on
// "StopWait", and writes nothing.
func TestStopWaitMustBePositive(t *testing.T) {
	t.Parallel()
	for _, d := range dbtest.All() {
		t.Run(d.Name, func(t *testing.T) {
			db := d.Open(t)
			require.NoError(t, migrate.Up(t.Context(), db))
			before := persistencetest.TakeSnapshot(t, db, persistencetest.Exact()).String()
			for _, wait := range []time.Duration{0, -time.Second} {
				repo := repository.New(db, repository.StopWait(wait))
				_, err := repo.CreateFeatureRun(t.Context(), repository.NewFeatureRun{Phase: "plan"})
				var input *repository.InputError
				require.ErrorAs(t, err, &input, "a write with a wait of %v", wait)
				require.ErrorIs(t, err, repository.ErrInvalidInput)
				require.Equal(t, "StopWait", input.Field)
				_, err = repo.ListFeatureRuns(t.Context(), repository.RunFilter{}, repository.Page{})
				require.ErrorIs(t, err, repository.ErrInvalidInput, "a read with a wait of %v", wait)
			}
			require.Equal(t, before, persistencetest.TakeSnapshot(t, db, persistencetest.Exact()).String(), "nothing written")
		})
	}
}
