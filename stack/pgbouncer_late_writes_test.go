package stack_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
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
	bin := pgBouncerBinary(t)
	database := dbtest.PostgresDatabase(t)
	direct := openGORM(t, directDSN(t, database))
	sqlDirect, err := direct.DB()
	require.NoError(t, err)
	// A lock holder for each trial running, and the setup and reads.
	sqlDirect.SetMaxOpenConns(bouncerLateWorkers + 4)
	sqlDirect.SetMaxIdleConns(bouncerLateWorkers + 4)
	require.NoError(t, migrate.Up(t.Context(), direct))
	for _, q := range bouncerWriteLogDDL {
		require.NoError(t, direct.Exec(q).Error, q)
	}
	w := newBouncerWaiters(t.Context(), dbtest.PostgresServer(t))

	for _, servers := range []struct {
		name string
		size int
	}{
		{"EnoughServers", bouncerLateWorkers + 4},
		{"ScarceServers", bouncerPoolSize},
	} {
		t.Run(servers.name, func(t *testing.T) {
			b := startPgBouncer(t, bin, database, servers.size)
			db := openGORM(t, b.dsn+"&"+pgBouncerExecMode)
			sqlDB, err := db.DB()
			require.NoError(t, err)
			sqlDB.SetMaxOpenConns(3 * bouncerLateWorkers)
			sqlDB.SetMaxIdleConns(3 * bouncerLateWorkers)
			// PgBouncer opens server connections one at a time: open
			// them all now, so that a call does not wait for one where
			// servers are not scarce.
			require.NoError(t, openServers(t.Context(), sqlDB, servers.size))
			runBouncerLateTrials(t, servers.name, &bouncerLateSite{
				repo: repository.New(db), pool: db, direct: direct, plain: repository.New(direct), w: w,
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
	return 20
}

var (
	// bouncerLateDelays are how long after the call returned the lock
	// holder commits, freeing the row.
	bouncerLateDelays = []time.Duration{0, time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond}
	// bouncerLateReasons are how the call's context ends.
	bouncerLateReasons = []string{"cancel", "deadline"}
)

const (
	// bouncerLateDeadline is the timeout of a call whose reason is
	// "deadline".
	bouncerLateDeadline = 30 * time.Millisecond
	// A call whose reason is "cancel" is cancelled at a random moment
	// this long after it started, and not before it was seen waiting for
	// the lock, or bouncerLateStuck passed.
	bouncerCancelMin, bouncerCancelMax = 20 * time.Millisecond, 50 * time.Millisecond
	// bouncerLateStuck is how long after its context ended a call may go
	// on waiting before the holder frees the lock anyway: the call is then
	// stuck, returning only once the lock is free. It is longer than the
	// Repository's bound on its wait for a stopped statement's answer (5
	// s), so that a call that waits for it is not counted stuck.
	bouncerLateStuck = 7 * time.Second
	// bouncerLateSettle is how long after the last later write the rows
	// are read, so that a statement the server still ran once it got the
	// lock is seen.
	bouncerLateSettle = 200 * time.Millisecond
	// bouncerLateWorkers is how many trials run at once, each on rows of
	// its own. Each keeps three connections to PgBouncer in the
	// Repository's pool (see warmClients) and holds one to PostgreSQL,
	// the lock holder's.
	bouncerLateWorkers = 16
)

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

// warmClients makes sure that db's pool has n idle connections to
// PgBouncer, so that the calls of a trial do not wait for a connection to
// be made: a connection the Repository stopped a statement on is closed,
// and making one may take a good part of a 30 ms deadline.
func warmClients(ctx context.Context, db *gorm.DB, n int) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	conns := make([]*sql.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range n {
		c, err := sqlDB.Conn(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	return nil
}

// bouncerRows are a trial's rows: a run and a sandbox of it.
type bouncerRows struct {
	run     uuid.UUID
	sandbox string
}

// The statements that take the locks, in GORM's placeholders.
const (
	bouncerLockRun     = `SELECT 1 FROM feature_runs WHERE id = ? FOR UPDATE`
	bouncerLockSandbox = `SELECT 1 FROM sandboxes WHERE id = ? FOR UPDATE`
)

// bouncerLateWrite is a write that another transaction's lock blocks, and
// the later write a workflow makes to the same row once it moved on; see
// reliability's lateWrite, whose marks and rules these are.
type bouncerLateWrite struct {
	name    string
	lock    string
	lockID  func(f bouncerRows) any
	prepare func(ctx context.Context, r *repository.Repository, f bouncerRows) error
	// blocked is the write whose context ends while it waits; later is
	// the write made once the lock is free.
	blocked, later func(ctx context.Context, r *repository.Repository, f bouncerRows, key string) error
	// blockedMark and laterMark are the marks the two writes leave in
	// late_writes when they commit; final is the mark of what the row
	// holds.
	blockedMark, laterMark func(f bouncerRows, key string) string
	final                  func(ctx context.Context, r *repository.Repository, f bouncerRows, key string) (string, error)
	// firstWins is whether the later write, a replay of a create, keeps
	// the blocked write when that committed first.
	firstWins bool
}

// bouncerPhaseID is the ID of the phase result the create of a trial makes.
func bouncerPhaseID(key string) uuid.UUID { return repository.StableID(key, "late phase") }

// bouncerLateWrites are the writes TestPgBouncerLateWrites blocks: a run's
// phase moves to "zombie-<trial>", then to "later-<trial>"; a running
// sandbox is paused, then set running; a phase result is created with the
// phase "zombie-<trial>", its parent run locked, then created again with
// "later-<trial>", a replay that keeps the first write.
func bouncerLateWrites() []bouncerLateWrite {
	run := func(f bouncerRows) any { return f.run }
	phase := func(prefix string) func(f bouncerRows, key string) string {
		return func(_ bouncerRows, key string) string { return prefix + key }
	}
	sandbox := func(s models.SandboxStatus) func(f bouncerRows, key string) string {
		return func(f bouncerRows, _ string) string { return f.sandbox + "=" + string(s) }
	}
	none := func(context.Context, *repository.Repository, bouncerRows) error { return nil }
	return []bouncerLateWrite{
		{
			name: "UpdateFeatureRunPhase", lock: bouncerLockRun, lockID: run, prepare: none,
			blocked: func(ctx context.Context, r *repository.Repository, f bouncerRows, key string) error {
				return r.UpdateFeatureRunPhase(ctx, f.run, "zombie-"+key)
			},
			later: func(ctx context.Context, r *repository.Repository, f bouncerRows, key string) error {
				return r.UpdateFeatureRunPhase(ctx, f.run, "later-"+key)
			},
			blockedMark: phase("zombie-"), laterMark: phase("later-"),
			final: func(ctx context.Context, r *repository.Repository, f bouncerRows, _ string) (string, error) {
				got, err := r.GetFeatureRun(ctx, f.run)
				if err != nil {
					return "", err
				}
				return got.Phase, nil
			},
		},
		{
			name: "UpdateSandboxStatus", lock: bouncerLockSandbox, lockID: func(f bouncerRows) any { return f.sandbox },
			prepare: func(ctx context.Context, r *repository.Repository, f bouncerRows) error {
				return r.UpdateSandboxStatus(ctx, f.sandbox, models.SandboxRunning)
			},
			blocked: func(ctx context.Context, r *repository.Repository, f bouncerRows, _ string) error {
				return r.UpdateSandboxStatus(ctx, f.sandbox, models.SandboxPaused)
			},
			later: func(ctx context.Context, r *repository.Repository, f bouncerRows, _ string) error {
				return r.UpdateSandboxStatus(ctx, f.sandbox, models.SandboxRunning)
			},
			blockedMark: sandbox(models.SandboxPaused), laterMark: sandbox(models.SandboxRunning),
			final: func(ctx context.Context, r *repository.Repository, f bouncerRows, _ string) (string, error) {
				got, err := r.GetSandbox(ctx, f.sandbox)
				if err != nil {
					return "", err
				}
				return f.sandbox + "=" + string(got.Status), nil
			},
		},
		{
			name: "CreatePhaseResult", lock: bouncerLockRun, lockID: run, prepare: none,
			blocked: func(ctx context.Context, r *repository.Repository, f bouncerRows, key string) error {
				_, err := r.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: bouncerPhaseID(key), FeatureRunID: f.run, Phase: "zombie-" + key})
				return err
			},
			later: func(ctx context.Context, r *repository.Repository, f bouncerRows, key string) error {
				_, err := r.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: bouncerPhaseID(key), FeatureRunID: f.run, Phase: "later-" + key})
				return err
			},
			blockedMark: phase("zombie-"), laterMark: phase("later-"),
			final: func(ctx context.Context, r *repository.Repository, _ bouncerRows, key string) (string, error) {
				got, err := r.GetPhaseResult(ctx, bouncerPhaseID(key))
				if err != nil {
					return "", err
				}
				return got.Phase, nil
			},
			firstWins: true,
		},
	}
}

// bouncerWriteLogDDL creates, after migrate.Up, the table late_writes and
// the triggers that mark in it each committed write of bouncerLateWrites,
// in the write's own transaction: a run's phase and a sandbox's
// "<id>=<status>" on every update, a phase result's phase on every insert.
var bouncerWriteLogDDL = []string{
	`CREATE TABLE late_writes (value text NOT NULL)`,
	`CREATE FUNCTION late_writes_phase() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO late_writes VALUES (NEW.phase); RETURN NULL; END$$`,
	`CREATE FUNCTION late_writes_sandbox() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO late_writes VALUES (NEW.id::text || '=' || NEW.status::text); RETURN NULL; END$$`,
	`CREATE TRIGGER late_writes_run AFTER UPDATE ON feature_runs FOR EACH ROW EXECUTE FUNCTION late_writes_phase()`,
	`CREATE TRIGGER late_writes_sandbox AFTER UPDATE ON sandboxes FOR EACH ROW EXECUTE FUNCTION late_writes_sandbox()`,
	`CREATE TRIGGER late_writes_phase AFTER INSERT ON phase_results FOR EACH ROW EXECUTE FUNCTION late_writes_phase()`,
}

// bouncerWaiters sees statements waiting for the locks of sessions, by
// polling pg_locks, which shows lock waits as they happen, on a direct
// connection to the server, every 3 ms while any session is watched. A
// statement of the Repository runs on a server connection of PgBouncer's,
// which pg_locks shows as any other.
type bouncerWaiters struct {
	mu      sync.Mutex
	watched map[int64]chan struct{}
}

// newBouncerWaiters polls on admin until ctx ends.
func newBouncerWaiters(ctx context.Context, admin *sql.DB) *bouncerWaiters {
	w := &bouncerWaiters{watched: map[int64]chan struct{}{}}
	go func() {
		for ctx.Err() == nil {
			time.Sleep(3 * time.Millisecond)
			w.mu.Lock()
			n := len(w.watched)
			w.mu.Unlock()
			if n == 0 {
				continue
			}
			rs, err := admin.QueryContext(ctx, `SELECT DISTINCT b FROM pg_locks, unnest(pg_blocking_pids(pid)) AS b WHERE NOT granted`)
			if err != nil {
				continue
			}
			var blocking []int64
			for rs.Next() {
				var id int64
				if rs.Scan(&id) == nil {
					blocking = append(blocking, id)
				}
			}
			_ = rs.Close()
			w.mu.Lock()
			for _, id := range blocking {
				if seen, ok := w.watched[id]; ok {
					close(seen)
					delete(w.watched, id)
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// watch returns a channel that closes once a statement is seen waiting
// for the locks of the session whose PID is holder. It stops looking once
// ctx ends.
func (w *bouncerWaiters) watch(ctx context.Context, holder int64) <-chan struct{} {
	seen := make(chan struct{})
	w.mu.Lock()
	w.watched[holder] = seen
	w.mu.Unlock()
	context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.watched[holder] == seen {
			delete(w.watched, holder)
		}
	})
	return seen
}

// bouncerLateSite is where trials run: the Repository through PgBouncer and
// the direct connections to the same database.
type bouncerLateSite struct {
	repo   *repository.Repository // through PgBouncer
	pool   *gorm.DB               // the Repository's, through PgBouncer
	direct *gorm.DB               // to PostgreSQL, for lock holders and reads
	plain  *repository.Repository // over direct, to prepare and read rows
	w      *bouncerWaiters
}

// bouncerLateTrial is one call blocked on a lock, and what happened.
type bouncerLateTrial struct {
	write  bouncerLateWrite
	reason string
	delay  time.Duration
	key    string
	f      bouncerRows

	err     error
	blocked bool          // the call was seen waiting for the holder's lock when its context ended
	stuck   bool          // the call returned only once the lock was freed
	lag     time.Duration // from the context's end to the call's return
	later   error         // of the later write
}

// run makes the trial on rows made and prepared: it takes the lock on a
// direct connection, makes the call through PgBouncer, ends its context,
// frees the lock delay after the call returned and makes the later write at
// once.
func (tr *bouncerLateTrial) run(ctx context.Context, s *bouncerLateSite) error {
	if err := warmClients(ctx, s.pool, 3); err != nil {
		return fmt.Errorf("warm the pool: %w", err)
	}
	tx := s.direct.WithContext(ctx).Begin()
	if tx.Error != nil {
		return fmt.Errorf("begin: %w", tx.Error)
	}
	freed := false
	free := func() error {
		if freed {
			return nil
		}
		freed = true
		return tx.Commit().Error
	}
	defer func() { _ = free() }()
	if err := tx.Exec(tr.write.lock, tr.write.lockID(tr.f)).Error; err != nil {
		return fmt.Errorf("take the lock: %w", err)
	}
	var holder int64
	if err := tx.Raw(`SELECT pg_backend_pid()`).Scan(&holder).Error; err != nil {
		return fmt.Errorf("name the lock holder: %w", err)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	seen := s.w.watch(watchCtx, holder)

	var cctx context.Context
	var cancel context.CancelFunc
	start := time.Now()
	ended := start.Add(bouncerLateDeadline)
	if tr.reason == "deadline" {
		cctx, cancel = context.WithDeadline(ctx, ended)
	} else {
		cctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	blocked := make(chan bool, 1)
	go func() {
		<-cctx.Done()
		select {
		case <-seen:
			blocked <- true
		default:
			blocked <- false
		}
	}()
	returned := make(chan error, 1)
	go func() { returned <- tr.write.blocked(cctx, s.repo, tr.f, tr.key) }()

	done := false
	if tr.reason == "cancel" {
		at := start.Add(bouncerCancelMin + rand.N(bouncerCancelMax-bouncerCancelMin))
		select {
		case <-seen:
		case tr.err = <-returned:
			done = true
		case <-time.After(bouncerLateStuck):
		}
		if !done {
			select {
			case <-time.After(time.Until(at)):
			case tr.err = <-returned:
				done = true
			}
		}
		ended = time.Now()
		cancel()
	}
	if !done {
		select {
		case tr.err = <-returned:
		case <-time.After(time.Until(ended) + bouncerLateStuck):
			// The call waits on: free the lock so that it can return.
			tr.stuck = true
			if err := free(); err != nil {
				return fmt.Errorf("free the lock: %w", err)
			}
			tr.err = <-returned
		}
	}
	tr.lag = time.Since(ended)
	cancel()
	tr.blocked = <-blocked

	time.Sleep(tr.delay)
	if err := free(); err != nil {
		return fmt.Errorf("free the lock: %w", err)
	}
	tr.later = tr.write.later(ctx, s.repo, tr.f, tr.key)
	return nil
}

// expected is the mark of what the trial's row must hold at the end.
func (tr *bouncerLateTrial) expected() string {
	if tr.err == nil && tr.write.firstWins {
		return tr.write.blockedMark(tr.f, tr.key)
	}
	return tr.write.laterMark(tr.f, tr.key)
}

// bouncerLateCombo is a write, how its context ends and how long after its
// return the lock is freed.
type bouncerLateCombo struct {
	write, reason string
	delay         time.Duration
}

// bouncerLateCounts counts the trials of a bouncerLateCombo; see
// reliability's lateCounts. laterErrs are later writes that failed.
type bouncerLateCounts struct {
	trials, blocked, nils, errs, otherErrs, stuck int
	late, lost, unstored, laterErrs               int
	maxLag                                        time.Duration
}

func (c *bouncerLateCounts) add(o *bouncerLateCounts) {
	c.trials += o.trials
	c.blocked += o.blocked
	c.nils += o.nils
	c.errs += o.errs
	c.otherErrs += o.otherErrs
	c.stuck += o.stuck
	c.late += o.late
	c.lost += o.lost
	c.unstored += o.unstored
	c.laterErrs += o.laterErrs
	c.maxLag = max(c.maxLag, o.maxLag)
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

// runBouncerLateTrials runs every trial on s, 16 at a time, then reads the
// rows and the write log, logs the counts and fails the test if any of
// (a), (b), unstored or the later writes' errors is not 0.
func runBouncerLateTrials(t *testing.T, name string, s *bouncerLateSite, logPath string) {
	ctx := t.Context()
	start := time.Now()
	var all []*bouncerLateTrial
	var order []bouncerLateCombo
	for _, w := range bouncerLateWrites() {
		for _, reason := range bouncerLateReasons {
			for _, delay := range bouncerLateDelays {
				order = append(order, bouncerLateCombo{w.name, reason, delay})
				for i := range bouncerLateTrials() {
					all = append(all, &bouncerLateTrial{write: w, reason: reason, delay: delay,
						key: fmt.Sprintf("%s-%s-%s-%s-%d", name, w.name, reason, delay, i)})
				}
			}
		}
	}
	// Every kind of trial in every group, in a random order.
	shuffled := append([]*bouncerLateTrial(nil), all...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	groups := make([][]*bouncerLateTrial, bouncerLateWorkers)
	for i, tr := range shuffled {
		groups[i%bouncerLateWorkers] = append(groups[i%bouncerLateWorkers], tr)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(groups))
	for g, group := range groups {
		wg.Go(func() {
			for _, tr := range group {
				tr.f = bouncerRows{run: repository.StableID(tr.key, "run"), sandbox: "sbx-" + tr.key}
				_, err := s.plain.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: tr.f.run, Phase: "plan"})
				if err == nil {
					err = s.plain.CreateSandboxRecord(ctx, repository.NewSandbox{ID: tr.f.sandbox, FeatureRunID: tr.f.run})
				}
				if err == nil {
					err = tr.write.prepare(ctx, s.plain, tr.f)
				}
				if err != nil {
					errs[g] = fmt.Errorf("%s: prepare: %w", tr.key, err)
					return
				}
			}
			for _, tr := range group {
				if err := tr.run(ctx, s); err != nil {
					errs[g] = fmt.Errorf("%s: %w", tr.key, err)
					return
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	took := time.Since(start)
	time.Sleep(bouncerLateSettle)

	var marks []string
	require.NoError(t, s.direct.WithContext(ctx).Raw(`SELECT value FROM late_writes`).Scan(&marks).Error)
	log := make(map[string]bool, len(marks))
	for _, m := range marks {
		log[m] = true
	}
	counts := map[bouncerLateCombo]*bouncerLateCounts{}
	for _, k := range order {
		counts[k] = &bouncerLateCounts{}
	}
	var odd, laterOdd []string
	for _, tr := range all {
		c := counts[bouncerLateCombo{tr.write.name, tr.reason, tr.delay}]
		c.trials++
		c.maxLag = max(c.maxLag, tr.lag)
		if tr.blocked {
			c.blocked++
		}
		if tr.stuck {
			c.stuck++
		}
		committed := log[tr.write.blockedMark(tr.f, tr.key)]
		want := context.Canceled
		if tr.reason == "deadline" {
			want = context.DeadlineExceeded
		}
		switch {
		case tr.err == nil:
			c.nils++
			if !committed {
				c.unstored++
			}
		case !errors.Is(tr.err, want):
			c.otherErrs++
			if len(odd) < 5 {
				odd = append(odd, fmt.Sprintf("%s: %v", tr.key, tr.err))
			}
			fallthrough
		default:
			c.errs++
			if committed {
				c.late++
			}
		}
		if tr.later != nil {
			c.laterErrs++
			if len(laterOdd) < 5 {
				laterOdd = append(laterOdd, fmt.Sprintf("%s: %v", tr.key, tr.later))
			}
		}
		final, err := tr.write.final(ctx, s.plain, tr.f, tr.key)
		if err != nil {
			t.Errorf("%s: read the row: %v", tr.key, err)
		} else if final != tr.expected() {
			c.lost++
		}
	}

	var b strings.Builder
	const head = "%-22s %-8s %5s | %6s %7s %4s %4s %5s %5s %7s | %8s %8s %8s %9s\n"
	const line = "%-22s %-8s %5s | %6d %7d %4d %4d %5d %5d %7s | %8d %8d %8d %9d\n"
	fmt.Fprintf(&b, "through PgBouncer (%s): %d calls blocked on a lock, in %v\n", name, len(all), took.Round(10*time.Millisecond))
	fmt.Fprintf(&b, head, "write", "reason", "delay", "trials", "blocked", "nil", "err", "other", "stuck", "max lag", "(a) late", "(b) lost", "unstored", "later err")
	row := func(write, reason, delay string, c *bouncerLateCounts) {
		fmt.Fprintf(&b, line, write, reason, delay, c.trials, c.blocked, c.nils, c.errs, c.otherErrs, c.stuck,
			c.maxLag.Round(time.Millisecond), c.late, c.lost, c.unstored, c.laterErrs)
	}
	total := &bouncerLateCounts{}
	for _, reason := range bouncerLateReasons {
		for _, delay := range bouncerLateDelays {
			sum := &bouncerLateCounts{}
			for _, k := range order {
				if k.reason == reason && k.delay == delay {
					sum.add(counts[k])
				}
			}
			total.add(sum)
			row("(every write)", reason, delay.String(), sum)
		}
	}
	for _, k := range order {
		row(k.write, k.reason, k.delay.String(), counts[k])
	}
	row("(total)", "", "", total)
	fmt.Fprintf(&b, `blocked: seen waiting for the lock in pg_locks when the context ended (a lower bound)
nil, err: what the call returned; other: errors that do not match the context's (context.Canceled, context.DeadlineExceeded)
stuck: returned only once the lock was freed anyway, %v after the context ended; max lag: from the context's end to the return
(a) late: returned an error, and its write committed; (b) lost: the row does not hold the later write at the end
unstored: returned nil, and its write never committed; later err: the later write failed
`, bouncerLateStuck)
	if len(odd) > 0 {
		fmt.Fprintf(&b, "errors that do not match the context's (other): %s\n", strings.Join(odd, "; "))
	}
	if len(laterOdd) > 0 {
		fmt.Fprintf(&b, "later writes that failed: %s\n", strings.Join(laterOdd, "; "))
	}
	if out, err := os.ReadFile(logPath); err == nil {
		// A client connection's lines name it C-0x…, a server
		// connection's S-0x….
		n := map[string]int{}
		for l := range strings.Lines(string(out)) {
			for _, o := range bouncerCancelOutcomes {
				if strings.Contains(l, " C-0x") && strings.Contains(l, "closing because: "+o+" (") {
					n[o]++
				}
			}
		}
		fmt.Fprintf(&b, "PgBouncer's cancel requests, from its log:")
		for _, o := range bouncerCancelOutcomes {
			fmt.Fprintf(&b, " %q %d;", o, n[o])
		}
		b.WriteString("\n")
	}
	t.Logf("\n%s", b.String())

	if total.late > 0 {
		t.Errorf("%d of %d calls that returned an error had their write committed afterwards, once the lock was freed ((a) late above)", total.late, total.errs)
	}
	if total.lost > 0 {
		t.Errorf("in %d of %d trials the row does not hold the later write, made once the lock was freed ((b) lost above)", total.lost, total.trials)
	}
	if total.unstored > 0 {
		t.Errorf("%d of %d calls that returned nil never had their write committed (unstored above)", total.unstored, total.nils)
	}
	if total.laterErrs > 0 {
		t.Errorf("%d of %d later writes failed (later err above)", total.laterErrs, total.trials)
	}
}
