package reliability_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// restartEnv must be 1 for TestServerRestart to run: it restarts the whole
// server, which breaks every other test using it at the time.
const restartEnv = "PERSISTENCE_RESTART_TEST"

// restartCmdEnv, when set, is the shell command that restarts the server,
// for servers pg_ctlcluster does not manage (a container, another OS).
const restartCmdEnv = "PERSISTENCE_RESTART_CMD"

// restartCommand returns the command that restarts the test server: the
// one in restartCmdEnv, or pg_ctlcluster for the cluster listening on the
// DSN's port.
func restartCommand(t *testing.T) *exec.Cmd {
	t.Helper()
	if cmd := os.Getenv(restartCmdEnv); cmd != "" {
		return exec.Command("sh", "-c", cmd)
	}
	u, err := url.Parse(dbtest.PostgresDSN())
	if err != nil {
		t.Fatalf("parse DSN: %v", err)
	}
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	out, err := exec.Command("pg_lsclusters", "--no-header").Output()
	if err != nil {
		t.Skipf("skipping: cannot list PostgreSQL clusters to restart (pg_lsclusters: %v); set %s to the command that restarts the server", err, restartCmdEnv)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// Version Cluster Port Status Owner Data-directory Log-file
		f := strings.Fields(sc.Text())
		if len(f) >= 3 && f[2] == port {
			return exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", f[0], f[1], "restart")
		}
	}
	t.Skipf("skipping: no local PostgreSQL cluster listens on port %s (pg_lsclusters: %q); set %s to the command that restarts the server", port, out, restartCmdEnv)
	return nil
}

// startTime returns when the server started, waiting for it to accept
// connections again if it is restarting.
func startTime(t *testing.T, db *sql.DB) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		var at time.Time
		err := db.QueryRowContext(ctx, `SELECT pg_postmaster_start_time()`).Scan(&at)
		if err == nil {
			return at
		}
		if ctx.Err() != nil {
			t.Fatalf("the server did not come back within a minute: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestServerRestart restarts PostgreSQL while workers run workloads.
// Every call during the outage must return an error within its context's
// deadline, never hang; the pool must recover on its own, and every
// workload, retried, must end exactly as its clean run.
func TestServerRestart(t *testing.T) {
	if os.Getenv(restartEnv) != "1" {
		t.Skipf("skipping: set %s=1 to restart the PostgreSQL server in the middle of a workload (it breaks other tests using the server at the time, so run it alone)", restartEnv)
	}
	cmd := restartCommand(t)
	const stepTimeout = 2 * time.Second
	f := fleet{prefix: "restart", workers: 4, perWorker: 10}
	db := dbtest.PostgresWithParams(t, map[string]string{
		"application_name": "reliability-restart-" + uuid.NewString()[:8],
		"connect_timeout":  "2",
	})
	ctx := t.Context()
	if err := migrate.Up(ctx, db); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	sqlDB.SetMaxIdleConns(f.workers)
	clean := cleanSnapshots(t, f.seeds())
	admin := dbtest.PostgresServer(t)
	before := startTime(t, admin)

	policy := retryPolicy{attempts: 200, backoff: 10 * time.Millisecond, maxBackoff: 500 * time.Millisecond, stepTimeout: stepTimeout}
	var stats stepStats
	runCtx, stopRun := context.WithCancel(ctx)
	var o *outcome
	done := make(chan struct{})
	go func() {
		defer close(done)
		o = f.run(runCtx, repository.New(db), policy, &stats)
	}()
	for stats.steps.Load() < 200 {
		select {
		case <-done:
			o.report(t, len(clean), policy)
			t.Fatalf("the workloads ended after %d steps, before the restart", stats.steps.Load())
		case <-time.After(10 * time.Millisecond):
		}
	}
	stepsBefore := stats.steps.Load()
	restartStart := time.Now()
	out, restartErr := cmd.CombinedOutput()
	restartTook := time.Since(restartStart)
	// The shared administration pool holds connections the restart ended;
	// dropping its idle ones lets it reconnect, as the test's pool must on
	// its own.
	admin.SetMaxIdleConns(0)
	admin.SetMaxIdleConns(2)
	after := startTime(t, admin)
	if !after.After(before) {
		stopRun()
		<-done
		if restartErr != nil {
			t.Skipf("skipping: cannot restart PostgreSQL with %q: %v: %s", cmd.String(), restartErr, out)
		}
		t.Fatalf("%q succeeded but the server still started at %v", cmd.String(), before)
	}
	if restartErr != nil {
		t.Errorf("%q: %v: %s", cmd.String(), restartErr, out)
	}
	<-done
	stopRun()
	o.report(t, len(clean), policy)

	diffs, rows := compareWithClean(t, ctx, db, clean, o)
	t.Logf("server restart: %d workloads (%d workers), restart after %d steps took %v; %d steps, %d attempts, %d retries, slowest attempt %v (deadline %v), %d rows compared, %d differences; retried causes:%s",
		len(clean), f.workers, stepsBefore, restartTook.Round(time.Millisecond), stats.steps.Load(), stats.attempts.Load(), stats.retries.Load(),
		stats.slowest.Round(time.Millisecond), stepTimeout, rows, diffs, stats.summary())
	if stats.retries.Load() == 0 {
		t.Error("no call failed: the restart did not happen during the workload")
	}
	if stats.slowest > stepTimeout+time.Second {
		t.Errorf("an attempt took %v, past its deadline of %v", stats.slowest, stepTimeout)
	}
	if diffs != 0 {
		t.Errorf("%d differences from the clean runs, want 0", diffs)
	}
}
