package reliability_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/dialect/mariadb"
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
	causes  map[string]int // of the faults that were retried
	slowest time.Duration  // attempt
}

func (s *stepStats) took(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slowest = max(s.slowest, d)
}

func (s *stepStats) retried(cause string) {
	s.retries.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.causes == nil {
		s.causes = map[string]int{}
	}
	s.causes[cause]++
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

// faultCause names the fault err is, without the step's IDs, or returns
// "" when err is none of those a lost connection, a server going away or
// an attempt's deadline causes. Only faults are retried: retrying anything
// else would hide it, and a contract error (ErrNotFound, ErrInvalidInput,
// ErrInvalidTransition) is an answer no retry can change, which a fault
// must never be reported as.
func faultCause(err error) string {
	var pgErr *pgconn.PgError
	var myErr *mysql.MySQLError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		// First: the driver's own error for a statement the deadline cut
		// can look like any of the faults below, or like none.
		return "context deadline exceeded"
	case errors.As(err, &pgErr):
		// Class 57 is the operator's intervention (a terminated backend,
		// a server shutting down or starting up), class 08 a broken
		// connection.
		if class := pgErr.Code[:2]; class == "57" || class == "08" {
			return "SQLSTATE " + pgErr.Code + ": " + pgErr.Message
		}
		// A Citus coordinator refuses, before any node commits, the
		// transaction of a statement whose connection to a worker failed
		// (a worker backend killed): the Repository sends a single
		// statement again itself, but not one inside a transaction, nor
		// the DDL of migrate.Up.
		if pgErr.Code == "XX000" && strings.HasPrefix(pgErr.Message, "failure on connection marked as essential") {
			return "SQLSTATE XX000: failure on connection marked as essential"
		}
	case errors.As(err, &myErr):
		// 1927 is sent to a connection killed in the middle of a
		// statement, 2013 a connection lost during a query.
		if myErr.Number == 1927 || myErr.Number == 2013 {
			return "MySQL " + strconv.Itoa(int(myErr.Number)) + ": " + myErr.Message
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	case errors.Is(err, mysql.ErrInvalidConn):
		return "invalid connection"
	case errors.Is(err, driver.ErrBadConn):
		return "driver: bad connection"
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		var errno syscall.Errno
		errors.As(err, &errno)
		return errno.Error()
	}
	return ""
}

// execWithRetry executes step as a workflow engine would: it retries
// failures that are faults, with exponential backoff and jitter, up to
// p.attempts in all. It returns nil once the step's outcome is one Check
// accepts, and an error when the outcome is one Check does not accept and
// no fault explains (which a retry would hide, or could not change) or
// the attempts ran out.
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
		if ctx.Err() != nil {
			return fmt.Errorf("step %s: %w", step.Name, ctx.Err())
		}
		cause := faultCause(verdict)
		if cause == "" {
			return fmt.Errorf("no fault explains the outcome, not retried: %w", verdict)
		}
		if attempt == p.attempts {
			break
		}
		stats.retried(cause)
		time.Sleep(backoff/2 + rand.N(backoff/2+1))
		backoff = min(2*backoff, p.maxBackoff)
	}
	return fmt.Errorf("step %s: %w after %d attempts: %w", step.Name, errGaveUp, p.attempts, err)
}

// errGaveUp marks the error of a step whose every attempt failed with a
// fault: the workload is abandoned unfinished, which is a failure of its
// own, not a corrupted row.
var errGaveUp = errors.New("gave up")

// cleanSnapshots runs each workload once on a fresh SQLite database and
// returns the rows each leaves, by run. TestCleanRunIsTheSameOnEveryDatabase
// shows PostgreSQL and MariaDB leave the same.
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

// killer closes, from the server's side, one random connection of a
// test's pool and no other, and returns what the server said the
// connection was doing (running a statement, idle), or "" when the pool
// had none to kill.
type killer func(ctx context.Context) (state string, err error)

// postgresVictim opens a fresh PostgreSQL schema whose connections carry
// an application name of their own, by which its killer tells them from
// those of the other tests sharing the server.
func postgresVictim(t *testing.T) (*gorm.DB, killer) {
	app := "reliability-faults-" + uuid.NewString()[:8]
	db := dbtest.PostgresWithParams(t, map[string]string{"application_name": app})
	admin := dbtest.PostgresServer(t)
	return db, func(ctx context.Context) (string, error) {
		var state string
		err := admin.QueryRowContext(ctx, `
SELECT state FROM (
	SELECT pid, coalesce(state, 'unknown') AS state FROM pg_stat_activity WHERE application_name = $1 ORDER BY random() LIMIT 1
) AS victim WHERE pg_terminate_backend(pid)`, app).Scan(&state)
		if errors.Is(err, sql.ErrNoRows) {
			return "", nil
		}
		return state, err
	}
}

// mariaDBVictim opens a fresh MariaDB database, whose name its killer
// finds the pool's connections by. The killer's own connection uses no
// database, so that it is never among them.
func mariaDBVictim(t *testing.T) (*gorm.DB, killer) {
	db := openQuietMariaDB(t)
	var name string
	if err := db.WithContext(t.Context()).Raw(`SELECT DATABASE()`).Scan(&name).Error; err != nil || name == "" {
		t.Fatalf("name the test's database: %q, %v", name, err)
	}
	cfg, err := mariadb.Config(dbtest.MariaDBDSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.DBName = ""
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	return db, func(ctx context.Context) (string, error) {
		var id int64
		var command string
		err := admin.QueryRowContext(ctx, `SELECT id, command FROM information_schema.processlist WHERE db = ? AND command <> 'Killed' ORDER BY RAND() LIMIT 1`, name).Scan(&id, &command)
		if errors.Is(err, sql.ErrNoRows) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		// Connections already killed, and closing, are not listed again.
		// KILL takes no placeholder. The connection may have closed since
		// it was listed (1094, no such thread); its ID is never given to
		// another before the server restarts.
		_, err = admin.ExecContext(ctx, "KILL CONNECTION "+strconv.FormatInt(id, 10))
		var myErr *mysql.MySQLError
		if errors.As(err, &myErr) && myErr.Number == 1094 {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		return command, nil
	}
}

// kills counts the connections the chaos killed, by what each was doing.
type kills map[string]int64

func (k kills) total() int64 {
	var n int64
	for _, c := range k {
		n += c
	}
	return n
}

// String lists the counts, most frequent first.
func (k kills) String() string {
	states := make([]string, 0, len(k))
	for s := range k {
		states = append(states, s)
	}
	sort.Slice(states, func(i, j int) bool { return k[states[i]] > k[states[j]] })
	parts := make([]string, len(states))
	for i, s := range states {
		parts[i] = fmt.Sprintf("%d %s", k[s], s)
	}
	return strings.Join(parts, ", ")
}

// openQuietMariaDB opens a fresh MariaDB database whose pool does not log:
// go-sql-driver/mysql logs every dead connection it finds, which the chaos
// makes by the thousand (the test counts the failures they cause).
func openQuietMariaDB(t testing.TB) *gorm.DB {
	return dbtest.MariaDBWith(t, func(c *mysql.Config) { c.Logger = &mysql.NopLogger{} })
}

// chaos kills connections of a pool at the pace of the work the pool
// does, not of the clock: one for every few statements, so that a loaded
// machine, on which the workers go slower, gets no more faults per step
// than an idle one, nor fewer.
type chaos struct {
	every int64
	on    atomic.Bool
	sent  atomic.Int64 // statements, counted while on
	wake  chan struct{}

	mu       sync.Mutex
	caughtUp *sync.Cond // signalled after each kill, and when the killer ends
	ended    bool       // the killer's
	made     int64      // kills made, found a connection or not
	misses   int64      // kills that found no connection to kill
	waits    int64      // statements that waited for the killer to catch up
	killed   kills
	err      error // of the kill that failed, which ends the killer
}

// chaosLag is how many kills the killer may fall behind the statements
// before the statements wait for it.
const chaosLag = 4

// chaosEvery registers, on every callback chain of db, a callback that
// counts each statement db runs, sent or failed, and starts a goroutine
// that kills one random connection of the pool with kill for every every
// statements counted, while the workers go on: a kill finds its victim in
// the middle of a statement as often as the workers are in one. When the
// killer falls more than chaosLag kills behind, as on a loaded machine
// where a kill is slow, the statement that counts the next kill waits for
// it to catch up, so that the kills follow the statements however slow
// either is. stop ends the chaos and returns what it did; the statements
// db runs afterwards are neither counted nor followed by kills.
func chaosEvery(t *testing.T, db *gorm.DB, kill killer, every int64) (stop func() *chaos) {
	t.Helper()
	c := &chaos{every: every, wake: make(chan struct{}, 1), killed: kills{}}
	c.caughtUp = sync.NewCond(&c.mu)
	count := func(tx *gorm.DB) {
		if !c.on.Load() || tx.Statement.SQL.Len() == 0 {
			return
		}
		n := c.sent.Add(1)
		if n%c.every != 0 {
			return
		}
		select {
		case c.wake <- struct{}{}:
		default: // the killer is already due to look
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.ended && c.made < n/c.every-chaosLag {
			c.waits++
			for !c.ended && c.made < n/c.every-chaosLag {
				c.caughtUp.Wait()
			}
		}
	}
	cb := db.Callback()
	for _, register := range []func(string, func(*gorm.DB)) error{
		cb.Create().After("*").Register, cb.Query().After("*").Register, cb.Update().After("*").Register,
		cb.Delete().After("*").Register, cb.Row().After("*").Register, cb.Raw().After("*").Register,
	} {
		if err := register("reliability:chaos", count); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		defer func() {
			c.mu.Lock()
			c.ended = true
			c.mu.Unlock()
			c.caughtUp.Broadcast()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-c.wake:
			}
			for ctx.Err() == nil {
				c.mu.Lock()
				due := c.made < c.sent.Load()/c.every
				c.mu.Unlock()
				if !due {
					break
				}
				state, err := kill(ctx)
				c.mu.Lock()
				switch {
				case err != nil && ctx.Err() == nil:
					c.err = fmt.Errorf("chaos: %w", err)
				case err != nil:
				case state == "":
					c.made++
					c.misses++
				default:
					c.made++
					c.killed[state]++
				}
				failed := c.err != nil
				c.mu.Unlock()
				c.caughtUp.Broadcast()
				if failed {
					return
				}
			}
		}
	}()
	c.on.Store(true)
	stop = func() *chaos {
		c.on.Store(false)
		cancel()
		c.mu.Lock()
		defer c.mu.Unlock()
		for !c.ended {
			c.caughtUp.Wait()
		}
		return c
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

// outcome is how a fleet's workloads ended: those not listed finished.
type outcome struct {
	mu sync.Mutex
	// gaveUp are the workloads abandoned when a step's attempts ran out,
	// by key.
	gaveUp map[string]error
	// failed are the workloads stopped by an error no fault explains, by
	// key.
	failed map[string]error
}

// unfinished reports whether the workload key did not finish.
func (o *outcome) unfinished(key string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, gaveUp := o.gaveUp[key]
	_, failed := o.failed[key]
	return gaveUp || failed
}

// report fails t for each workload that did not finish, with a message for
// those that gave up apart from those that failed.
func (o *outcome) report(t *testing.T, workloads int, p retryPolicy) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	list := func(errs map[string]error) error {
		keys := make([]string, 0, len(errs))
		for k := range errs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var first []error
		for _, k := range keys[:min(len(keys), 3)] {
			first = append(first, fmt.Errorf("workload %s: %w", k, errs[k]))
		}
		return errors.Join(first...)
	}
	if n := len(o.gaveUp); n > 0 {
		t.Errorf("%d of %d workloads gave up, a step failing with a fault on each of its %d attempts (not compared with their clean runs):\n%v", n, workloads, p.attempts, list(o.gaveUp))
	}
	if n := len(o.failed); n > 0 {
		t.Errorf("%d of %d workloads failed with an error no fault explains:\n%v", n, workloads, list(o.failed))
	}
}

// run executes every workload against s, each worker its own in turn and
// each step with execWithRetry. A workload that gives up, or fails, is
// left unfinished and the worker goes on to its next one, as a workflow
// engine's would; all stop when ctx ends.
func (f fleet) run(ctx context.Context, s workload.Store, p retryPolicy, stats *stepStats) *outcome {
	seeds := f.seeds()
	o := &outcome{gaveUp: map[string]error{}, failed: map[string]error{}}
	var workers sync.WaitGroup
	for w := range f.workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range f.perWorker {
				key := f.key(w, i)
				for _, step := range workload.Generate(seeds[key], key) {
					err := execWithRetry(ctx, s, step, p, stats)
					if err == nil {
						continue
					}
					o.mu.Lock()
					if errors.Is(err, errGaveUp) {
						o.gaveUp[key] = err
					} else {
						o.failed[key] = err
					}
					o.mu.Unlock()
					if ctx.Err() != nil {
						return
					}
					break
				}
			}
		}()
	}
	workers.Wait()
	return o
}

// compareWithClean reports every finished workload whose rows differ from
// its clean snapshot, and rows that belong to no workload, and returns the
// number of differences and of rows compared. The workloads o did not
// finish are not compared: their rows are counted as they are, so that
// rows of no workload are still found.
func compareWithClean(t *testing.T, ctx context.Context, db *gorm.DB, clean map[string]snapshot, o *outcome) (diffs, rows int) {
	t.Helper()
	want, compared := 0, 0
	for key, snap := range clean {
		got := takeSnapshot(t, ctx, db, workload.RunID(key))
		if o.unfinished(key) {
			want += got.rows()
			continue
		}
		d := diff(snap, got)
		for _, line := range d[:min(len(d), 3)] {
			t.Errorf("workload %s: %s", key, line)
		}
		diffs += len(d)
		want += snap.rows()
		compared += got.rows()
	}
	all := takeSnapshot(t, ctx, db, uuid.Nil).rows()
	if all != want {
		t.Errorf("the database holds %d rows, the clean runs and the unfinished workloads %d", all, want)
		diffs += max(all-want, want-all)
	}
	return diffs, compared
}

// killEvery is, by database, the number of statements the workers run
// per connection killed. Each kills more connections than the 10 ms clock
// the test was paced by did, on an idle machine (2,093 on PostgreSQL,
// 1,202 on MariaDB) and at a load average of 10 to 19 on 2 cores (3,957
// and 1,117): a run sends about 20,000 statements to PostgreSQL and
// 22,000 to MariaDB, which reads a row's state after a write that changed
// nothing, retries included, so about 5,000 and 2,700 are killed (with
// the 25 workloads per worker the test ran then; it runs 12 now, which
// halves these counts and the test's time).
var killEvery = map[string]int64{"postgres": 4, "mariadb": 8, "citus": 8}

// TestFaultInjection runs, on PostgreSQL and on MariaDB, 8 workers of 12
// workloads each while a random connection of their pool is killed for
// every few statements they run (killEvery), however fast they run them.
// Workers retry failed steps as a workflow engine would. Every workload
// must finish, none giving up after its attempts, and end exactly as its
// clean run: no duplicate, no lost memory, no regressed status.
func TestFaultInjection(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping fault injection under -short: it runs 96 workloads on each server while killing connections")
	}
	f := fleet{prefix: "fault", workers: 8, perWorker: 12}
	clean := cleanSnapshots(t, f.seeds())
	for _, target := range []struct {
		name string
		open func(t *testing.T) (*gorm.DB, killer)
	}{
		{"postgres", postgresVictim},
		{"mariadb", mariaDBVictim},
	} {
		t.Run(target.name, func(t *testing.T) {
			t.Parallel()
			db, kill := target.open(t)
			injectFaults(t, target.name, f, clean, db, kill, killEvery[target.name], "")
		})
	}
}

// injectFaults runs fleet f on db, the database called name, in schema
// (the pool's default schema when ""), while kill closes one of the pool's
// connections for every every statements, and checks that every workload
// ends as in clean.
func injectFaults(t *testing.T, name string, f fleet, clean map[string]snapshot, db *gorm.DB, kill killer, every int64, schema string) {
	ctx := t.Context()
	var migrateOpts []migrate.Option
	var repoOpts []repository.Option
	if schema != "" {
		migrateOpts = append(migrateOpts, migrate.InSchema(schema))
		repoOpts = append(repoOpts, repository.InSchema(schema))
	}
	if err := migrate.Up(ctx, db, migrateOpts...); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	sqlDB.SetMaxOpenConns(2 * f.workers)
	sqlDB.SetMaxIdleConns(2 * f.workers)

	policy := retryPolicy{attempts: 30, backoff: 2 * time.Millisecond, maxBackoff: 100 * time.Millisecond, stepTimeout: 10 * time.Second}
	var stats stepStats
	stopChaos := chaosEvery(t, db, kill, every)
	start := time.Now()
	o := f.run(ctx, repository.New(db, repoOpts...), policy, &stats)
	c := stopChaos()
	elapsed := time.Since(start)
	if c.err != nil {
		t.Error(c.err)
	}
	o.report(t, len(clean), policy)
	// The chaos may have killed idle connections, which the pool
	// only notices when it hands them out: drop them before
	// reading.
	sqlDB.SetMaxIdleConns(0)
	sqlDB.SetMaxIdleConns(2)

	diffs, rows := compareWithClean(t, ctx, db, clean, o)
	t.Logf("fault injection on %s: %d workloads (%d workers), %d finished, %d gave up, %d failed; %d steps, %d attempts, %d statements, %d connections killed, 1 per %d statements (%v; %d of %d kills made found none, %d due at the end not made; %d statements waited for the killer), %d retries, %d rows compared, %d differences, in %v; retried causes:%s",
		name, len(clean), f.workers, len(clean)-len(o.gaveUp)-len(o.failed), len(o.gaveUp), len(o.failed),
		stats.steps.Load(), stats.attempts.Load(), c.sent.Load(), c.killed.total(), c.every, c.killed, c.misses, c.made, c.sent.Load()/c.every-c.made, c.waits,
		stats.retries.Load(), rows, diffs, elapsed.Round(time.Millisecond), stats.summary())
	if diffs != 0 {
		t.Errorf("%d differences from the clean runs of the finished workloads, want 0", diffs)
	}
	if c.killed.total() == 0 || stats.retries.Load() == 0 {
		t.Errorf("the chaos killed %d connections and caused %d retries: the test injected no fault", c.killed.total(), stats.retries.Load())
	}
}

// TestFaultInjectionOnCitus is TestFaultInjection on a Citus coordinator,
// in a tenant schema of its own (a distributed schema, on one worker), with
// 8 workers of 10 workloads: backends of the test's pool on the
// coordinator are killed, one for every killEvery["citus"] statements,
// and a new connection's first distributed query there takes about 17 ms.
// Nothing may be lost or doubled. It runs where TEST_CITUS_DSN is set.
func TestFaultInjectionOnCitus(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping fault injection under -short: it runs 40 workloads on Citus while killing connections")
	}
	// Beside the other tests: it kills only the backends of its own
	// application_name.
	t.Parallel()
	app := "reliability-faults-" + uuid.NewString()[:8]
	db := dbtest.CitusWithParams(t, map[string]string{"application_name": app})
	admin, err := sql.Open("pgx", os.Getenv(dbtest.CitusEnvVar))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	kill := func(ctx context.Context) (string, error) {
		var state string
		err := admin.QueryRowContext(ctx, `
SELECT state FROM (
	SELECT pid, coalesce(state, 'unknown') AS state FROM pg_stat_activity WHERE application_name = $1 ORDER BY random() LIMIT 1
) AS victim WHERE pg_terminate_backend(pid)`, app).Scan(&state)
		if errors.Is(err, sql.ErrNoRows) {
			return "", nil
		}
		return state, err
	}
	f := fleet{prefix: "citus-fault", workers: 8, perWorker: 5}
	injectFaults(t, "citus", f, cleanSnapshots(t, f.seeds()), db, kill, killEvery["citus"], dbtest.TenantSchema(db))
}
