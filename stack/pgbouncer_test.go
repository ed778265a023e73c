package stack_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// pgBouncerExecMode is the pgx setting docs/databases.md recommends behind
// PgBouncer in transaction pooling mode.
//
// PgBouncer lends a server connection to a client for one transaction, and
// a statement outside one is a transaction of its own, so a client's next
// statement may run on another server connection. That rules out the modes
// that leave state on a server connection for a later round trip:
//
//   - cache_statement, pgx's default, prepares each statement under a name
//     once, then executes it by name: on another server connection the name
//     is missing, or another client prepared it there already. (PgBouncer
//     1.21 and later can track the names, with max_prepared_statements.)
//   - describe_exec prepares the unnamed statement in one round trip and
//     executes it in a second, which may reach a server connection whose
//     unnamed statement is another client's.
//
// cache_describe, exec and simple_protocol send a statement in one round
// trip. But cache_describe spends a second one the first time each
// connection runs a statement, and trusts the result types it cached
// across schema changes; simple_protocol interpolates the arguments into
// the SQL text on the client, a mode pgx keeps for proxies without the
// extended protocol. exec sends parse, bind, execute and a single sync
// together, with the arguments as text whose types the server infers, as
// it does for a prepared statement: one round trip on one server
// connection, arguments apart from the SQL, nothing cached.
const pgBouncerExecMode = "default_query_exec_mode=exec"

// The concurrency of the PgBouncer workload. Twice as many clients as
// PgBouncer has server connections, so clients share servers, as they do
// in production, and consecutive statements of a client land on different
// server connections.
const (
	bouncerWorkers  = 8
	bouncerPoolSize = 4
)

// bouncerIterations is how many times each goroutine makes every write, on
// new rows each time: fewer under -short, which CI runs under the race
// detector.
func bouncerIterations() int {
	if testing.Short() {
		return 5
	}
	return 25
}

// TestPgBouncer runs every write of the contract, with its replay, from
// concurrent goroutines through PgBouncer in transaction pooling mode, with
// pgx in the query exec mode docs/databases.md recommends, and shows that pgx's
// default mode fails there.
func TestPgBouncer(t *testing.T) {
	t.Parallel()
	bin := pgBouncerBinary(t)
	// A database of its own rather than the schema of dbtest.Postgres:
	// PgBouncer refuses search_path as a startup parameter ("unsupported
	// startup parameter") unless ignore_startup_parameters lists it, and
	// then drops it, so a connection through PgBouncer cannot choose a
	// schema.
	database := dbtest.PostgresDatabase(t)
	dsn := startPgBouncer(t, bin, database, bouncerPoolSize).dsn
	execDB := openGORM(t, dsn+"&"+pgBouncerExecMode)
	// Through PgBouncer too: Up runs in one transaction, which PgBouncer
	// keeps on one server connection, and its advisory lock is the
	// transaction's, not the session's.
	require.NoError(t, migrate.Up(t.Context(), execDB))

	t.Run("ExecMode", func(t *testing.T) {
		repo := repository.New(execDB)
		ctx := t.Context()
		start := time.Now()
		errs := dbtest.Concurrently(bouncerWorkers, func(w int) error {
			for i := range bouncerIterations() {
				if err := writeAll(ctx, repo, fmt.Sprintf("exec/%d/%d", w, i)); err != nil {
					return fmt.Errorf("iteration %d: %w", i, err)
				}
			}
			return nil
		})
		for w, err := range errs {
			assert.NoError(t, err, "goroutine %d", w)
		}
		t.Logf("%d goroutines x %d iterations of the contract's writes (%d calls, each replayed once) in %v",
			bouncerWorkers, bouncerIterations(), len(contractWrites("")), time.Since(start).Round(time.Millisecond))

		// Every replay found the row its first call wrote, whichever
		// server connection it ran on: no row is missing, duplicated or
		// left in another state.
		for table, statuses := range statusesPerKey {
			var rows []struct {
				Status string
				N      int64
			}
			require.NoError(t, repo.DB().WithContext(ctx).Table(table).Select("status, count(*) AS n").Group("status").Scan(&rows).Error)
			got := map[string]int64{}
			for _, r := range rows {
				got[r.Status] = r.N
			}
			want := map[string]int64{}
			for status, perKey := range statuses {
				want[status] = perKey * int64(bouncerWorkers*bouncerIterations())
			}
			assert.Equal(t, want, got, table)
		}
	})

	// The same writes with pgx's default query exec mode, cache_statement,
	// on rows of their own: the reason the setting docs/databases.md recommends exists. Writes
	// go on after a failure, to count them.
	t.Run("DefaultModeFails", func(t *testing.T) {
		repo := repository.New(openGORM(t, dsn))
		ctx := t.Context()
		var calls, failed, prepared atomic.Int64
		var first atomic.Value
		dbtest.Concurrently(bouncerWorkers, func(w int) error {
			for i := range bouncerIterations() {
				for _, write := range contractWrites(fmt.Sprintf("default/%d/%d", w, i)) {
					for range 2 {
						calls.Add(1)
						err := write.call(ctx, repo)
						if err == nil {
							continue
						}
						failed.Add(1)
						if isPreparedStatementError(err) {
							prepared.Add(1)
						}
						first.CompareAndSwap(nil, err.Error())
					}
				}
			}
			return nil
		})
		t.Logf("cache_statement through PgBouncer: %d of %d calls failed, %d of them on a prepared statement missing from or already on the server connection; first: %v",
			failed.Load(), calls.Load(), prepared.Load(), first.Load())
		assert.Positive(t, prepared.Load(), "pgx's default mode fails through PgBouncer in transaction mode")
	})
}

// isPreparedStatementError reports whether err is PostgreSQL's refusal to
// execute a prepared statement the server connection does not have, or to
// prepare one it already has.
func isPreparedStatementError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "26000" || pgErr.Code == "42P05")
}

// openGORM opens GORM on dsn as an application would, without the
// recording of dbtest, and closes it when the test ends.
func openGORM(t *testing.T, dsn string) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	t.Cleanup(func() { _ = sqlDB.Close() })
	return db
}

// pgBouncerBinary returns the path of the pgbouncer executable. Without one
// the test is skipped, or fails where the CI environment variable is set.
func pgBouncerBinary(t *testing.T) string {
	t.Helper()
	// Debian installs it in /usr/sbin, which is not on every user's PATH.
	for _, name := range []string{"pgbouncer", "/usr/sbin/pgbouncer"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("pgbouncer is required when CI is set: install it (apt-get install pgbouncer)")
	}
	t.Skip("skipping: no pgbouncer on PATH or in /usr/sbin (apt-get install pgbouncer)")
	return ""
}

// pgBouncer is a PgBouncer a test started.
type pgBouncer struct {
	// dsn is the URL of the database through it, with a query for more
	// parameters to be appended to and pgx's default query exec mode.
	dsn string
	// logPath is its log file, which is removed when the test ends.
	logPath string
}

// startPgBouncer starts a PgBouncer of the test's own, in transaction
// pooling mode with poolSize server connections (default_pool_size), in
// front of database on the test server. It stops PgBouncer when the test
// ends.
func startPgBouncer(t *testing.T, bin, database string, poolSize int) *pgBouncer {
	t.Helper()
	return startPgBouncerVia(t, bin, "", database, poolSize)
}

// startPgBouncerVia is startPgBouncer with PgBouncer connecting to the
// test server through via, a host:port, unless via is "".
func startPgBouncerVia(t *testing.T, bin, via, database string, poolSize int) *pgBouncer {
	t.Helper()
	server, err := pgconn.ParseConfig(dbtest.PostgresDSN())
	require.NoError(t, err)
	if via != "" {
		host, port, err := net.SplitHostPort(via)
		require.NoError(t, err)
		p, err := strconv.ParseUint(port, 10, 16)
		require.NoError(t, err)
		server.Host, server.Port = host, uint16(p)
	}
	// The port is free when chosen but may be taken before PgBouncer binds
	// it, by a test running at the same time: then try another.
	var lastErr error
	for range 3 {
		port, err := dbtest.FreePort()
		require.NoError(t, err)
		b := &pgBouncer{dsn: fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", server.User, port, database)}
		if lastErr = runPgBouncer(t, bin, server, database, port, poolSize, b); lastErr == nil {
			return b
		}
	}
	t.Fatalf("start pgbouncer: %v", lastErr)
	return nil
}

// runPgBouncer writes PgBouncer's configuration, starts it on port and
// waits until b.dsn answers through it, and sets b.logPath. It returns an
// error if PgBouncer exits first.
func runPgBouncer(t *testing.T, bin string, server *pgconn.Config, database string, port, poolSize int, b *pgBouncer) error {
	t.Helper()
	dsn := b.dsn
	runAs := unprivilegedUser(t)
	dir := pgBouncerDir(t, runAs)
	// Not daemonised (-d): a child process, stopped by its PID, whose
	// output goes to the log.
	configPath := filepath.Join(dir, "pgbouncer.ini")
	cmd := exec.Command(bin, configPath)
	switchTo := ""
	if name := runAsUser(cmd, runAs); name != "" {
		switchTo = "user = " + name + "\n"
	}
	backend := fmt.Sprintf("host=%s port=%d dbname=%s user=%s", server.Host, server.Port, database, server.User)
	if server.Password != "" {
		backend += " password='" + server.Password + "'"
	}
	config := fmt.Sprintf(`[databases]
%s = %s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
; No Unix socket, so instances of parallel tests cannot collide on one.
unix_socket_dir =
pidfile = %s
auth_type = trust
auth_file = %s
pool_mode = transaction
; Cancel requests are client connections too, each kept until forwarded.
max_client_conn = 500
default_pool_size = %d
%s`, database, backend, port, filepath.Join(dir, "pgbouncer.pid"), filepath.Join(dir, "users.txt"), poolSize, switchTo)
	// With trust, PgBouncer still admits only the users of auth_file.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "users.txt"), fmt.Appendf(nil, "%q \"\"\n", server.User), 0o644))
	require.NoError(t, os.WriteFile(configPath, []byte(config), 0o644))
	logPath := filepath.Join(dir, "pgbouncer.log")
	b.logPath = logPath
	log, err := os.Create(logPath)
	require.NoError(t, err)
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // immediate shutdown
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	showLog := func() {
		if out, err := os.ReadFile(logPath); err == nil {
			t.Logf("pgbouncer log, %s", logDigest(string(out)))
		}
	}

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			showLog()
			return fmt.Errorf("pgbouncer exited on port %d: %v", port, cmd.ProcessState)
		default:
		}
		if err = ping(t.Context(), dsn); err == nil {
			break
		}
		if time.Now().After(deadline) {
			stop()
			showLog()
			t.Fatalf("pgbouncer does not answer on port %d: %v", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			showLog()
		}
	})
	return nil
}

// logDigest returns what a failed test shows of PgBouncer's log: its
// WARNING, ERROR and FATAL lines (the first 20) and its last 10 lines.
// The whole log of a test that cancels hundreds of statements runs to
// thousands of lines, which would bury the test's own failure message.
func logDigest(log string) string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	var notable []string
	for _, l := range lines {
		if len(notable) < 20 && (strings.Contains(l, " WARNING ") || strings.Contains(l, " ERROR ") || strings.Contains(l, " FATAL ")) {
			notable = append(notable, l)
		}
	}
	last := lines[max(0, len(lines)-10):]
	return fmt.Sprintf("%d lines; its warnings and errors:\n%s\nits last lines:\n%s",
		len(lines), strings.Join(notable, "\n"), strings.Join(last, "\n"))
}

// unprivileged is a user other than root.
type unprivileged struct {
	name     string
	uid, gid uint32
}

// unprivilegedUser returns the user PgBouncer runs as when the test runs
// as root, which PgBouncer refuses to run as: nobody. Otherwise it returns
// nil, and PgBouncer runs as the test's user.
func unprivilegedUser(t *testing.T) *unprivileged {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("nobody")
	require.NoError(t, err)
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	require.NoError(t, err)
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	require.NoError(t, err)
	return &unprivileged{name: u.Username, uid: uint32(uid), gid: uint32(gid)}
}

// pgBouncerDir returns a directory for PgBouncer's files, owned by runAs
// unless that is nil, and removed when the test ends. Not t.TempDir, whose
// parent only the test's user may enter: PgBouncer writes its pidfile in
// the directory.
func pgBouncerDir(t *testing.T, runAs *unprivileged) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgbouncer-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if runAs != nil {
		require.NoError(t, os.Chown(dir, int(runAs.uid), int(runAs.gid)))
	}
	return dir
}

// ping connects to dsn and runs an empty query, which reaches the server
// through PgBouncer.
func ping(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SELECT 1").ReadAll()
	return err
}
