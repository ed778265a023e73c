package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/workload"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// retryPolicy is how the simulated workflow engine retries a failed step.
type retryPolicy struct {
	attempts    int           // at most, the first included
	backoff     time.Duration // before the first retry, doubled on each
	maxBackoff  time.Duration
	stepTimeout time.Duration // of each attempt
}

// stepStats counts what executing steps under faults took.
type stepStats struct {
	steps, attempts, retries atomic.Int64

	mu      sync.Mutex
	causes  map[string]int // of the errors that were retried
	slowest time.Duration  // attempt
}

func (s *stepStats) took(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slowest = max(s.slowest, d)
}

func (s *stepStats) retried(err error) {
	s.retries.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.causes == nil {
		s.causes = map[string]int{}
	}
	s.causes[faultCause(err)]++
}

// summary lists the causes of retries, most frequent first.
func (s *stepStats) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var causes []string
	for c := range s.causes {
		causes = append(causes, c)
	}
	sort.Slice(causes, func(i, j int) bool { return s.causes[causes[i]] > s.causes[causes[j]] })
	var b strings.Builder
	for _, c := range causes {
		fmt.Fprintf(&b, "\n\t%6d × %s", s.causes[c], c)
	}
	return b.String()
}

// faultCause names the kind of failure err is, without the step's IDs.
func faultCause(err error) string {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		return "SQLSTATE " + pgErr.Code + ": " + pgErr.Message
	case errors.Is(err, context.DeadlineExceeded):
		return "context deadline exceeded"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// contractError reports whether err is an answer of the contract rather
// than a fault: a fault must never be reported as one, and retrying one
// would not help.
func contractError(err error) bool {
	return errors.Is(err, repository.ErrInvalidInput) ||
		errors.Is(err, repository.ErrNotFound) ||
		errors.Is(err, repository.ErrInvalidTransition)
}

// execWithRetry executes step as a workflow engine would: it retries
// failures that are faults, with exponential backoff and jitter, up to
// p.attempts in all. It returns nil once the step's outcome is one Check
// accepts, and an error when the outcome is a contract error Check does
// not accept (which no retry can change) or the attempts ran out.
func execWithRetry(ctx context.Context, s workload.Store, step workload.Step, p retryPolicy, stats *stepStats) error {
	stats.steps.Add(1)
	backoff := p.backoff
	var err error
	for attempt := 1; attempt <= p.attempts; attempt++ {
		stats.attempts.Add(1)
		actx, cancel := context.WithTimeout(ctx, p.stepTimeout)
		start := time.Now()
		err = step.Run(actx, s)
		stats.took(time.Since(start))
		cancel()
		verdict := workload.Check(step.Name, workload.InOrder, err)
		if verdict == nil {
			return nil
		}
		if err == nil || contractError(err) {
			return verdict
		}
		if ctx.Err() != nil {
			return fmt.Errorf("step %s: %w", step.Name, ctx.Err())
		}
		if attempt == p.attempts {
			break
		}
		stats.retried(err)
		time.Sleep(backoff/2 + rand.N(backoff/2+1))
		backoff = min(2*backoff, p.maxBackoff)
	}
	return fmt.Errorf("step %s: gave up after %d attempts: %w", step.Name, p.attempts, err)
}

// cleanSnapshots runs each workload once on a fresh SQLite database and
// returns the rows each leaves, by run. TestCleanRunIsTheSameOnBothDatabases
// shows PostgreSQL leaves the same.
func cleanSnapshots(t *testing.T, workloads map[string]int64) map[string]snapshot {
	t.Helper()
	ctx, db, repo := freshRepo(t, dbtest.SQLite)
	out := make(map[string]snapshot, len(workloads))
	for key, seed := range workloads {
		runSteps(t, ctx, repo, workload.Generate(seed, key), workload.InOrder)
		out[key] = takeSnapshot(t, ctx, db, workload.RunID(key))
	}
	return out
}

// chaos terminates, every few milliseconds until stopped, one random
// backend of the pool whose connections carry application name app.
// Backends of other tests, which share the server, have other names and
// are never touched. stop ends the chaos and returns how many backends it
// terminated.
func chaos(t *testing.T, app string, every time.Duration) (stop func() int64) {
	admin := dbtest.PostgresServer(t)
	ctx, cancel := context.WithCancel(t.Context())
	var killed int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			time.Sleep(every/2 + rand.N(every))
			var n int64
			err := admin.QueryRowContext(ctx, `
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM (
	SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY random() LIMIT 1
) AS victim`, app).Scan(&n)
			if err != nil && ctx.Err() == nil {
				t.Errorf("chaos: %v", err)
				return
			}
			killed += n
		}
	}()
	stop = func() int64 {
		cancel()
		<-done
		return killed
	}
	t.Cleanup(func() { stop() })
	return stop
}

// fleet is workloads shared among workers, as a workflow engine's workers
// share the workflows to run.
type fleet struct {
	prefix             string
	workers, perWorker int
}

func (f fleet) key(worker, i int) string { return fmt.Sprintf("%s-%d-%d", f.prefix, worker, i) }

// seeds returns the seed of each workload by key.
func (f fleet) seeds() map[string]int64 {
	seeds := map[string]int64{}
	for w := range f.workers {
		for i := range f.perWorker {
			seeds[f.key(w, i)] = int64(w*f.perWorker + i)
		}
	}
	return seeds
}

// run executes every workload against s, each worker its own in turn and
// each step with execWithRetry, and returns why workloads were abandoned.
func (f fleet) run(ctx context.Context, s workload.Store, p retryPolicy, stats *stepStats) []error {
	seeds := f.seeds()
	failures := make([]error, f.workers)
	var workers sync.WaitGroup
	for w := range f.workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range f.perWorker {
				key := f.key(w, i)
				for _, step := range workload.Generate(seeds[key], key) {
					if err := execWithRetry(ctx, s, step, p, stats); err != nil {
						failures[w] = fmt.Errorf("workload %s: %w", key, err)
						return
					}
				}
			}
		}()
	}
	workers.Wait()
	return failures
}

// compareWithClean reports every workload whose rows differ from its clean
// snapshot, and rows that belong to no workload, and returns the number of
// differences and of rows compared.
func compareWithClean(t *testing.T, ctx context.Context, db *gorm.DB, clean map[string]snapshot) (diffs, rows int) {
	t.Helper()
	want := 0
	for key, snap := range clean {
		d := diff(snap, takeSnapshot(t, ctx, db, workload.RunID(key)))
		for _, line := range d[:min(len(d), 3)] {
			t.Errorf("workload %s: %s", key, line)
		}
		diffs += len(d)
		want += snap.rows()
	}
	rows = takeSnapshot(t, ctx, db, uuid.Nil).rows()
	if rows != want {
		t.Errorf("the database holds %d rows, the clean runs %d", rows, want)
		diffs += max(rows-want, want-rows)
	}
	return diffs, rows
}

// TestFaultInjection runs 8 workers of 25 workloads each on PostgreSQL
// while a chaos goroutine terminates a random connection of their pool
// every few milliseconds. Workers retry failed steps as a workflow engine
// would. Every workload must end exactly as its clean run: no duplicate,
// no lost memory, no regressed status.
func TestFaultInjection(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping fault injection under -short: it runs 200 workloads on PostgreSQL while terminating connections")
	}
	f := fleet{prefix: "fault", workers: 8, perWorker: 25}
	app := "reliability-faults-" + uuid.NewString()[:8]
	db := dbtest.PostgresWithParams(t, map[string]string{"application_name": app})
	ctx := t.Context()
	if err := migrate.Up(ctx, db); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	sqlDB.SetMaxOpenConns(2 * f.workers)
	sqlDB.SetMaxIdleConns(2 * f.workers)
	clean := cleanSnapshots(t, f.seeds())

	policy := retryPolicy{attempts: 30, backoff: 2 * time.Millisecond, maxBackoff: 100 * time.Millisecond, stepTimeout: 10 * time.Second}
	var stats stepStats
	stopChaos := chaos(t, app, 10*time.Millisecond)
	start := time.Now()
	failures := f.run(ctx, repository.New(db), policy, &stats)
	killed := stopChaos()
	elapsed := time.Since(start)
	if err := errors.Join(failures...); err != nil {
		t.Error(err)
	}
	// The chaos may have terminated idle connections, which the pool only
	// notices when it hands them out: drop them before reading.
	sqlDB.SetMaxIdleConns(0)
	sqlDB.SetMaxIdleConns(2)

	diffs, rows := compareWithClean(t, ctx, db, clean)
	t.Logf("fault injection: %d workloads (%d workers), %d steps, %d attempts, %d connections terminated, %d retries, %d rows compared, %d differences, in %v; retried causes:%s",
		len(clean), f.workers, stats.steps.Load(), stats.attempts.Load(), killed, stats.retries.Load(), rows, diffs, elapsed.Round(time.Millisecond), stats.summary())
	if diffs != 0 {
		t.Errorf("%d differences from the clean runs, want 0", diffs)
	}
	if killed == 0 || stats.retries.Load() == 0 {
		t.Errorf("the chaos terminated %d connections and caused %d retries: the test injected no fault", killed, stats.retries.Load())
	}
}
