package stack_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/latewrites"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// TestPgBouncerLateWrites is reliability's TestLateWrites through PgBouncer
// in transaction pooling mode: no write lands after its call returned an
// error, where the Repository's cancel request reaches PostgreSQL only as
// PgBouncer forwards it, to the server connection it then links to the
// call's client connection, if any.
//
// The Repository runs over a pool connected to PgBouncer with
// default_query_exec_mode=exec. A call waits for a row that a transaction
// on a direct connection to PostgreSQL locked (SELECT … FOR UPDATE on the
// row, or on its parent run for a create) when its context ends: by
// cancel, 20–50 ms after it started and once pg_locks, polled on a direct
// connection, shows it waiting for the holder; or by a 30 ms deadline. The
// holder commits 0, 1, 10 or 100 ms after the call returned, and at once
// the workflow writes the same row again through PgBouncer. 200 ms after
// the last trial the rows are read, with the log of every committed write
// that triggers keep.
//
// For each write, reason and delay it counts (a) calls that returned an
// error but whose write committed, (b) trials whose row does not hold the
// later write at the end (or, for a create, the blocked write if that call
// returned nil), calls that returned nil but whose write never committed,
// and later writes that failed: all must be 0. It runs 20 trials of each (5
// under -short), 16 at a time on rows of their own, with as many PgBouncer
// server connections as the trials need (EnoughServers) and with 4, fewer than
// the calls waiting at once, so that calls wait in PgBouncer's queue for a
// server connection, where a cancel request finds no statement to stop
// (ScarceServers). The counts are logged as a table, with how PgBouncer
// handled the cancel requests, from its log.
func TestPgBouncerLateWrites(t *testing.T) {
	t.Parallel()
	bin := pgBouncerBinary(t)
	database := dbtest.PostgresDatabase(t)
	direct := openGORM(t, directDSN(t, database))
	sqlDirect, err := direct.DB()
	require.NoError(t, err)
	// A lock holder for each trial running, and the setup and reads.
	sqlDirect.SetMaxOpenConns(latewrites.Workers + 4)
	sqlDirect.SetMaxIdleConns(latewrites.Workers + 4)
	require.NoError(t, migrate.Up(t.Context(), direct))
	for _, q := range latewrites.WriteLogDDL["postgres"] {
		require.NoError(t, direct.Exec(q).Error, q)
	}
	// A statement of the Repository runs on a server connection of
	// PgBouncer's, which pg_locks, read on a direct connection, shows as
	// any other.
	w := latewrites.PostgresWaiters(t.Context(), dbtest.PostgresServer(t))

	for _, servers := range []struct {
		name string
		size int
	}{
		{"EnoughServers", latewrites.Workers + 4},
		{"ScarceServers", bouncerPoolSize},
	} {
		t.Run(servers.name, func(t *testing.T) {
			b := startPgBouncer(t, bin, database, servers.size)
			db := openGORM(t, b.dsn+"&"+pgBouncerExecMode)
			sqlDB, err := db.DB()
			require.NoError(t, err)
			sqlDB.SetMaxOpenConns(3 * latewrites.Workers)
			sqlDB.SetMaxIdleConns(3 * latewrites.Workers)
			// PgBouncer opens server connections one at a time: open
			// them all now, so that a call does not wait for one where
			// servers are not scarce.
			require.NoError(t, openServers(t.Context(), sqlDB, servers.size))
			plain := repository.New(direct)
			runBouncerLateTrials(t, servers.name, &latewrites.Site{
				Repo: repository.New(db), Pool: db, Holder: direct, Plain: plain, Waiters: w, Stuck: bouncerLateStuck,
				MakeRows: func(ctx context.Context, key string) (latewrites.Rows, error) {
					f := latewrites.Rows{Run: repository.StableID(key, "run"), Sandbox: "sbx-" + key}
					_, err := plain.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: f.Run, Phase: "plan"})
					if err == nil {
						err = plain.CreateSandboxRecord(ctx, repository.NewSandbox{ID: f.Sandbox, FeatureRunID: f.Run})
					}
					return f, err
				},
			}, b.logPath)
		})
	}
}

// The trials of TestPgBouncerLateWrites: each write, its context ended by
// each reason, its lock freed after each delay, this many times.
func bouncerLateTrials() int {
	if testing.Short() {
		return 5
	}
	return latewrites.Trials
}

// bouncerLateStuck is how long after its context ended a call may go on
// waiting before the holder frees the lock anyway: the call is then stuck,
// returning only once the lock is free. It is longer than the Repository's
// default bound on its wait for a stopped statement's answer (15 s), so
// that a call that waits for it is not counted stuck.
const bouncerLateStuck = 20 * time.Second

// directDSN returns the URL of database on the test server, not through
// PgBouncer.
func directDSN(t *testing.T, database string) string {
	t.Helper()
	u, err := url.Parse(dbtest.PostgresDSN())
	require.NoError(t, err)
	u.Path = "/" + database
	return u.String()
}

// openServers makes PgBouncer open n server connections, by holding n
// client connections in statements at once, and leaves them idle in its
// pool.
func openServers(ctx context.Context, db *sql.DB, n int) error {
	errs := dbtest.Concurrently(n, func(int) error {
		_, err := db.ExecContext(ctx, `SELECT pg_sleep(0.2)`)
		return err
	})
	return errors.Join(errs...)
}

// bouncerCancelOutcomes are the reasons PgBouncer 1.18 and later log when
// they close a client connection that carried a cancel request, or the
// server connection they forwarded one on.
var bouncerCancelOutcomes = []string{
	"successfully sent cancel request",                       // forwarded to the server connection linked to the client
	"cancel request for idle client",                         // the client had no server connection: waiting for one, or between statements
	"not sending cancel request for client that is now idle", // the statement ended before a connection to forward it on opened
	"failed cancel request",                                  // no client with the key
	"failed to send cancel request",
}

// bouncerCancels counts, by its outcome (bouncerCancelOutcomes), each
// cancel request that PgBouncer's log at logPath says it closed.
func bouncerCancels(logPath string) (map[string]int, error) {
	out, err := os.ReadFile(logPath)
	if err != nil {
		return nil, err
	}
	// A client connection's lines name it C-0x…, a server connection's
	// S-0x….
	n := map[string]int{}
	for l := range strings.Lines(string(out)) {
		for _, o := range bouncerCancelOutcomes {
			if strings.Contains(l, " C-0x") && strings.Contains(l, "closing because: "+o+" (") {
				n[o]++
			}
		}
	}
	return n, nil
}

// runBouncerLateTrials runs every trial on s, 16 at a time, then reads the
// rows and the write log, logs the counts and fails the test if any of
// (a), (b), unstored or the later writes' errors is not 0.
func runBouncerLateTrials(t *testing.T, name string, s *latewrites.Site, logPath string) {
	ctx := t.Context()
	start := time.Now()
	all, order := latewrites.NewTrials(name+"-", bouncerLateTrials())
	var groups []latewrites.Group
	for _, trials := range latewrites.Deal(all, latewrites.Workers) {
		groups = append(groups, latewrites.Group{Site: s, Trials: trials})
	}
	require.NoError(t, latewrites.Run(ctx, groups))
	took := time.Since(start)
	time.Sleep(latewrites.Settle)

	tally := latewrites.NewTally(order)
	tally.LaterErrs = true
	tally.BlockedLegend = "seen waiting for the lock in pg_locks when the context ended (a lower bound)"
	tally.CountGroups(t, []latewrites.Group{{Site: s, Trials: all}})

	var b strings.Builder
	fmt.Fprintf(&b, "through PgBouncer (%s): %d calls blocked on a lock, in %v\n", name, len(all), took.Round(10*time.Millisecond))
	total := tally.Table(&b, s.Stuck)
	if n, err := bouncerCancels(logPath); err == nil {
		fmt.Fprintf(&b, "PgBouncer's cancel requests, from its log:")
		for _, o := range bouncerCancelOutcomes {
			fmt.Fprintf(&b, " %q %d;", o, n[o])
		}
		b.WriteString("\n")
	}
	t.Logf("\n%s", b.String())
	tally.Check(t, total)
}

// TestPgBouncerOutlivesASlowCancel checks that a write whose request to
// stop its statement goes unanswered for the Repository's stop wait (1 s
// here, [repository.StopWait]) leaves that request open until PgBouncer
// answers it: PgBouncer before 1.19.1 (Debian 12 ships 1.18) exits, FATAL
// "bad client state: 0", when a client closes a cancel request that it is
// still forwarding.
//
// PgBouncer reaches PostgreSQL through a dbtest.Proxy that holds each
// connection opened during the write for 2 s before it connects it: the
// connection on which PgBouncer forwards the cancel request of a write
// blocked on a row lock, whose deadline ended. The write returns its context's error after
// the stop wait, before PgBouncer has sent the request on. Once the proxy
// has let the request through, PgBouncer must still answer, and must have
// told the Repository's request that it sent it. The lock is held until
// then, so the request, forwarded late, still stops the statement: the
// row keeps its phase.
func TestPgBouncerOutlivesASlowCancel(t *testing.T) {
	t.Parallel()
	bin := pgBouncerBinary(t)
	ctx := t.Context()
	database := dbtest.PostgresDatabase(t)
	direct := openGORM(t, directDSN(t, database))
	require.NoError(t, migrate.Up(ctx, direct))
	server, err := pgconn.ParseConfig(dbtest.PostgresDSN())
	require.NoError(t, err)
	const wait = time.Second
	p := dbtest.NewProxy(t, net.JoinHostPort(server.Host, strconv.Itoa(int(server.Port))))
	b := startPgBouncerVia(t, bin, p.Addr(), database, 2)
	db := openGORM(t, b.dsn+"&"+pgBouncerExecMode)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	require.NoError(t, openServers(ctx, sqlDB, 2))
	repo := repository.New(db, repository.StopWait(wait))
	runID, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan"})
	require.NoError(t, err)

	holder := direct.WithContext(ctx).Begin()
	require.NoError(t, holder.Error)
	defer holder.Rollback()
	require.NoError(t, holder.Exec("SELECT id FROM feature_runs WHERE id = ? FOR UPDATE", runID.String()).Error)
	p.Hold(2 * wait)
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err = repo.UpdateFeatureRunPhase(wctx, runID, "implement")
	cancel()
	sent, readErr := bouncerCancels(b.logPath)
	p.Hold(0)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, readErr)
	require.Zero(t, sent[bouncerCancelOutcomes[0]], "the write returned once PgBouncer had sent its cancel request on, so the test shows nothing")

	require.Eventually(t, func() bool { return p.Holding() == 0 }, 15*time.Second, 10*time.Millisecond,
		"the proxy did not let the held connections through")
	require.Eventually(t, func() bool {
		n, err := bouncerCancels(b.logPath)
		return err == nil && n[bouncerCancelOutcomes[0]] == 1
	}, 5*time.Second, 10*time.Millisecond, "PgBouncer did not tell the Repository's cancel request that it sent it")
	require.NoError(t, ping(ctx, b.dsn), "PgBouncer no longer answers")
	require.NoError(t, holder.Rollback().Error)
	run, err := repository.New(direct).GetFeatureRun(ctx, runID)
	require.NoError(t, err)
	require.Equal(t, "plan", run.Phase, "the write whose call returned an error changed the row")
}
