package reliability_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/plugin/dbresolver"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// The trials of TestLateWrites: each write, its context ended by each
// reason, its lock freed after each delay, this many times.
const lateTrials = 20

var (
	// lateDelays are how long after the call returned the lock holder
	// commits, freeing the row.
	lateDelays = []time.Duration{0, time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond}
	// lateReasons are how the call's context ends.
	lateReasons = []string{"cancel", "deadline"}
)

const (
	// lateDeadline is the timeout of a call whose reason is "deadline".
	lateDeadline = 30 * time.Millisecond
	// A call whose reason is "cancel" is cancelled at a random moment
	// this long after it started, and not before it was seen waiting for
	// the lock (see waiters).
	lateCancelMin, lateCancelMax = 20 * time.Millisecond, 50 * time.Millisecond
	// lateStuck is how long after its context ended a call may go on
	// waiting for the lock before the holder frees it anyway: the call is
	// then stuck, returning only once the lock is free. On SQLite, whose
	// statements all wait so (sqlite3_interrupt does not end the busy
	// handler's wait for the lock), it is shorter, to keep the test fast.
	lateStuck, lateStuckSQLite = 2 * time.Second, 300 * time.Millisecond
	// lateSettle is how long after the last later write the rows are
	// read, so that a statement the server still ran once it got the
	// lock is seen.
	lateSettle = 200 * time.Millisecond
	// lateWorkers is how many trials run at once on a server, each on
	// rows of its own. Each holds up to three connections: the lock
	// holder's, the call's (whose statement the server may go on running
	// after the call returned) and the later write's.
	lateWorkers = 16
	// lateSQLiteTrials is how many trials run, one after another, on each
	// SQLite file.
	lateSQLiteTrials = 10
	// lateSQLiteDSN is the README's DSN for an SQLite file, with %s its
	// path: BEGIN takes the write lock (_txlock=immediate), and a write
	// waits up to 5 s for it.
	lateSQLiteDSN = "file:%s?_foreign_keys=on&_journal_mode=WAL&_busy_timeout=5000&_txlock=immediate"
)

// lateWrite is a write that another transaction's lock blocks, and the
// later write a workflow makes to the same row once it moved on.
//
// Every committed write leaves a mark in the table late_writes, written by
// a trigger in the write's own transaction (see createWriteLog), so that a
// blocked write that committed after its call returned an error is seen
// even where the later write hides it.
type lateWrite struct {
	name string
	// lock takes the lock that blocks the write (see holdLock), with
	// lockID as its var. On SQLite the holder takes none: its transaction
	// holds the database's write lock.
	lock   string
	lockID func(f rows) any
	// prepare brings the rows to the state the write starts from.
	prepare func(ctx context.Context, r *repository.Repository, f rows) error
	// blocked is the write whose context ends while it waits; later is
	// the write made once the lock is free, which the row must hold at
	// the end (but see firstWins).
	blocked, later func(ctx context.Context, r *repository.Repository, f rows, key string) error
	// blockedMark and laterMark are the marks the two writes leave in
	// late_writes when they commit.
	blockedMark, laterMark func(f rows, key string) string
	// final is the mark of what the row holds.
	final func(ctx context.Context, r *repository.Repository, f rows, key string) (string, error)
	// firstWins is whether the later write, a replay of a create, keeps
	// the blocked write when that committed first.
	firstWins bool
}

// latePhaseID is the ID of the phase result the create of a trial makes.
func latePhaseID(key string) uuid.UUID { return repository.StableID(key, "late phase") }

// lateWrites are the writes TestLateWrites blocks. Each later write is
// allowed whichever of the two writes lands first: a blocked write that
// lands after it shows in the row's state, one that lands before it only in
// the write log.
//
//   - a run's phase moves to "zombie-<trial>", then to "later-<trial>";
//   - a running sandbox is paused, then set running: a replay that changes
//     nothing when the pause did not land, a move back when it did;
//   - a phase result is created with the phase "zombie-<trial>", its parent
//     run locked, whose foreign key check waits for the lock (FOR KEY
//     SHARE on PostgreSQL, a shared lock on MariaDB, the write lock on
//     SQLite); the later write creates it again with the phase
//     "later-<trial>", as a step retried after the error would. The
//     second create of an ID is a replay that keeps the first write, so a
//     blocked create that lands first leaves its phase instead of the
//     later one.
func lateWrites() []lateWrite {
	run := func(f rows) any { return f.run }
	phase := func(prefix string) func(f rows, key string) string {
		return func(_ rows, key string) string { return prefix + key }
	}
	sandbox := func(s models.SandboxStatus) func(f rows, key string) string {
		return func(f rows, _ string) string { return f.sandbox + "=" + string(s) }
	}
	return []lateWrite{
		{
			name: "UpdateFeatureRunPhase", lock: lockRun, lockID: run,
			prepare: func(context.Context, *repository.Repository, rows) error { return nil },
			blocked: func(ctx context.Context, r *repository.Repository, f rows, key string) error {
				return r.UpdateFeatureRunPhase(ctx, f.run, "zombie-"+key)
			},
			later: func(ctx context.Context, r *repository.Repository, f rows, key string) error {
				return r.UpdateFeatureRunPhase(ctx, f.run, "later-"+key)
			},
			blockedMark: phase("zombie-"), laterMark: phase("later-"),
			final: func(ctx context.Context, r *repository.Repository, f rows, _ string) (string, error) {
				got, err := r.GetFeatureRun(ctx, f.run)
				if err != nil {
					return "", err
				}
				return got.Phase, nil
			},
		},
		{
			name: "UpdateSandboxStatus", lock: lockSandbox, lockID: func(f rows) any { return f.sandbox },
			prepare: func(ctx context.Context, r *repository.Repository, f rows) error {
				return r.UpdateSandboxStatus(ctx, f.sandbox, models.SandboxRunning)
			},
			blocked: func(ctx context.Context, r *repository.Repository, f rows, _ string) error {
				return r.UpdateSandboxStatus(ctx, f.sandbox, models.SandboxPaused)
			},
			later: func(ctx context.Context, r *repository.Repository, f rows, _ string) error {
				return r.UpdateSandboxStatus(ctx, f.sandbox, models.SandboxRunning)
			},
			blockedMark: sandbox(models.SandboxPaused), laterMark: sandbox(models.SandboxRunning),
			final: func(ctx context.Context, r *repository.Repository, f rows, _ string) (string, error) {
				got, err := r.GetSandbox(ctx, f.sandbox)
				if err != nil {
					return "", err
				}
				return f.sandbox + "=" + string(got.Status), nil
			},
		},
		{
			name: "CreatePhaseResult", lock: lockRun, lockID: run,
			prepare: func(context.Context, *repository.Repository, rows) error { return nil },
			blocked: func(ctx context.Context, r *repository.Repository, f rows, key string) error {
				_, err := r.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: latePhaseID(key), FeatureRunID: f.run, Phase: "zombie-" + key})
				return err
			},
			later: func(ctx context.Context, r *repository.Repository, f rows, key string) error {
				_, err := r.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: latePhaseID(key), FeatureRunID: f.run, Phase: "later-" + key})
				return err
			},
			blockedMark: phase("zombie-"), laterMark: phase("later-"),
			final: func(ctx context.Context, r *repository.Repository, _ rows, key string) (string, error) {
				got, err := r.GetPhaseResult(ctx, latePhaseID(key))
				if err != nil {
					return "", err
				}
				return got.Phase, nil
			},
			firstWins: true,
		},
	}
}

// writeLogDDL creates, after migrate.Up, the table late_writes and the
// triggers that mark in it each committed write of lateWrites: a run's
// phase and a sandbox's "<id>=<status>" on every update, a phase result's
// phase on every insert. A trigger's row commits, or rolls back, with the
// statement that fired it. The table has no key, so its inserts wait for
// no lock (on MariaDB not even the AUTO-INC lock).
var writeLogDDL = map[string][]string{
	"sqlite": {
		`CREATE TABLE late_writes (value TEXT NOT NULL)`,
		`CREATE TRIGGER late_writes_run AFTER UPDATE ON feature_runs BEGIN INSERT INTO late_writes (value) VALUES (NEW.phase); END`,
		`CREATE TRIGGER late_writes_sandbox AFTER UPDATE ON sandboxes BEGIN INSERT INTO late_writes (value) VALUES (NEW.id || '=' || NEW.status); END`,
		`CREATE TRIGGER late_writes_phase AFTER INSERT ON phase_results BEGIN INSERT INTO late_writes (value) VALUES (NEW.phase); END`,
	},
	"postgres": {
		`CREATE TABLE late_writes (value text NOT NULL)`,
		`CREATE FUNCTION late_writes_phase() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO late_writes VALUES (NEW.phase); RETURN NULL; END$$`,
		`CREATE FUNCTION late_writes_sandbox() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO late_writes VALUES (NEW.id::text || '=' || NEW.status::text); RETURN NULL; END$$`,
		`CREATE TRIGGER late_writes_run AFTER UPDATE ON feature_runs FOR EACH ROW EXECUTE FUNCTION late_writes_phase()`,
		`CREATE TRIGGER late_writes_sandbox AFTER UPDATE ON sandboxes FOR EACH ROW EXECUTE FUNCTION late_writes_sandbox()`,
		`CREATE TRIGGER late_writes_phase AFTER INSERT ON phase_results FOR EACH ROW EXECUTE FUNCTION late_writes_phase()`,
	},
	"mysql": {
		`CREATE TABLE late_writes (value VARCHAR(600) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		`CREATE TRIGGER late_writes_run AFTER UPDATE ON feature_runs FOR EACH ROW INSERT INTO late_writes (value) VALUES (NEW.phase)`,
		`CREATE TRIGGER late_writes_sandbox AFTER UPDATE ON sandboxes FOR EACH ROW INSERT INTO late_writes (value) VALUES (CONCAT(NEW.id, '=', NEW.status))`,
		`CREATE TRIGGER late_writes_phase AFTER INSERT ON phase_results FOR EACH ROW INSERT INTO late_writes (value) VALUES (NEW.phase)`,
	},
}

// createWriteLog creates late_writes and its triggers on db.
func createWriteLog(ctx context.Context, db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	ddl, ok := writeLogDDL[db.Name()]
	if !ok {
		return fmt.Errorf("no write log for %s", db.Name())
	}
	for _, q := range ddl {
		if _, err := sqlDB.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create the write log: %s: %w", q, err)
		}
	}
	return nil
}

// readWriteLog returns the marks of every write committed so far.
func readWriteLog(t *testing.T, db *gorm.DB) map[string]bool {
	t.Helper()
	var marks []string
	if err := db.WithContext(t.Context()).Raw(`SELECT value FROM late_writes`).Scan(&marks).Error; err != nil {
		t.Fatalf("read the write log: %v", err)
	}
	seen := make(map[string]bool, len(marks))
	for _, m := range marks {
		seen[m] = true
	}
	return seen
}

// waiters sees, on a server, a statement waiting for the locks of the
// session whose ID the statement holderID returns on it. Polling runs on
// connections of its own, outside the test's pool, so that it never takes
// the connection a blocked call waits for.
type waiters struct {
	holderID string
	// instant is whether a wait is seen within milliseconds, so that a
	// call with a 30 ms deadline can be seen blocked.
	instant bool
	// watch closes the channel it returns once a statement is seen
	// waiting for holder's locks; it stops looking once ctx ends.
	watch func(ctx context.Context, holder int64) <-chan struct{}
}

// lockWaiters returns the waiters of db's server; nil on SQLite, whose lock
// waits nothing shows.
func lockWaiters(t *testing.T, db *gorm.DB) *waiters {
	switch db.Name() {
	case "postgres":
		return postgresWaiters(dbtest.PostgresServer(t))
	case "mysql":
		return mariaDBWaiters(t.Context(), dbtest.MariaDBServer(t))
	}
	return nil
}

// postgresWaiters polls pg_locks, which shows lock waits as they happen,
// every 3 ms for each holder.
func postgresWaiters(admin *sql.DB) *waiters {
	return &waiters{
		holderID: `SELECT pg_backend_pid()`,
		instant:  true,
		watch: func(ctx context.Context, holder int64) <-chan struct{} {
			seen := make(chan struct{})
			go func() {
				for ctx.Err() == nil {
					var waits bool
					err := admin.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND $1::int = ANY (pg_blocking_pids(pid)))`, holder).Scan(&waits)
					if err == nil && waits {
						close(seen)
						return
					}
					time.Sleep(3 * time.Millisecond)
				}
			}()
			return seen
		},
	}
}

// mariaDBWaits is how often mariaDBWaiters reads InnoDB's lock waits.
// InnoDB refreshes the cache behind information_schema.innodb_trx and
// innodb_lock_waits only when it was not read for 0.1 s: read more often,
// they never change.
const mariaDBWaits = 120 * time.Millisecond

// mariaDBWaiters reads, every mariaDBWaits while any holder is watched,
// which sessions' locks statements wait for.
func mariaDBWaiters(ctx context.Context, admin *sql.DB) *waiters {
	var mu sync.Mutex
	watched := map[int64]chan struct{}{}
	go func() {
		for ctx.Err() == nil {
			time.Sleep(mariaDBWaits)
			mu.Lock()
			n := len(watched)
			mu.Unlock()
			if n == 0 {
				continue
			}
			rs, err := admin.QueryContext(ctx, `SELECT DISTINCT b.trx_mysql_thread_id FROM information_schema.innodb_lock_waits AS w
				JOIN information_schema.innodb_trx AS b ON b.trx_id = w.blocking_trx_id`)
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
			mu.Lock()
			for _, id := range blocking {
				if seen, ok := watched[id]; ok {
					close(seen)
					delete(watched, id)
				}
			}
			mu.Unlock()
		}
	}()
	return &waiters{
		holderID: `SELECT CONNECTION_ID()`,
		watch: func(ctx context.Context, holder int64) <-chan struct{} {
			seen := make(chan struct{})
			mu.Lock()
			watched[holder] = seen
			mu.Unlock()
			go func() {
				<-ctx.Done()
				mu.Lock()
				defer mu.Unlock()
				if watched[holder] == seen {
					delete(watched, holder)
				}
			}()
			return seen
		},
	}
}

// warm makes sure that db's pool has n idle connections, so that the
// calls of a trial do not wait for a connection to be made: a connection
// that a call's context broke is closed, and making one takes a good part
// of a 30 ms deadline.
func warm(ctx context.Context, db *gorm.DB, n int) error {
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

// lateTrial is one call blocked on a lock: its write, how its context ended
// and how long after the call returned the lock was freed; then what
// happened.
type lateTrial struct {
	write  lateWrite
	reason string
	delay  time.Duration
	key    string
	f      rows

	err     error
	checked bool          // whether the trial could see the call blocked (see waiters)
	blocked bool          // the call was seen waiting for the holder's lock when its context ended
	stuck   bool          // the call returned only once the lock was freed
	lag     time.Duration // from the context's end to the call's return
	later   error         // of the later write
}

// run makes the trial on rows made and prepared: it takes the lock, makes
// the call, ends its context, frees the lock delay after the call returned
// and makes the later write at once.
func (tr *lateTrial) run(ctx context.Context, s *lateSite) error {
	if err := warm(ctx, s.db, 3); err != nil {
		return fmt.Errorf("warm the pool: %w", err)
	}
	lock := tr.write.lock
	if s.db.Name() == "sqlite" {
		lock = "" // BEGIN takes the database's write lock
	}
	tx, err := holdLock(ctx, s.db, lock, tr.write.lockID(tr.f))
	if err != nil {
		return fmt.Errorf("take the lock: %w", err)
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
	var seen <-chan struct{}
	tr.checked = s.w != nil && (s.w.instant || tr.reason == "cancel")
	if s.w != nil {
		var holder int64
		if err := tx.Raw(s.w.holderID).Scan(&holder).Error; err != nil {
			return fmt.Errorf("name the lock holder: %w", err)
		}
		watchCtx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		seen = s.w.watch(watchCtx, holder)
	}

	var cctx context.Context
	var cancel context.CancelFunc
	start := time.Now()
	ended := start.Add(lateDeadline)
	if tr.reason == "deadline" {
		cctx, cancel = context.WithDeadline(ctx, ended)
	} else {
		cctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	// Whether the call was seen blocked when its context ended.
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
		at := start.Add(lateCancelMin + rand.N(lateCancelMax-lateCancelMin))
		if seen != nil {
			select {
			case <-seen:
			case tr.err = <-returned:
				done = true
			case <-time.After(s.stuck):
			}
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
		case <-time.After(time.Until(ended) + s.stuck):
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

// expected is the mark of what the trial's row must hold at the end: the
// later write's, unless the call returned nil, so that its write committed
// before the later one, and the later write keeps it.
func (tr *lateTrial) expected() string {
	if tr.err == nil && tr.write.firstWins {
		return tr.write.blockedMark(tr.f, tr.key)
	}
	return tr.write.laterMark(tr.f, tr.key)
}

// lateCombo is a write, how its context ends and how long after its
// return the lock is freed.
type lateCombo struct {
	write, reason string
	delay         time.Duration
}

// lateCounts counts the trials of a lateCombo.
type lateCounts struct {
	trials, checked, blocked, nils, errs, otherErrs, stuck int
	// late are calls that returned an error whose write committed; lost
	// are trials whose row does not hold the later write at the end;
	// unstored are calls that returned nil whose write never committed.
	late, lost, unstored int
	maxLag               time.Duration
}

func (c *lateCounts) add(o *lateCounts) {
	c.trials += o.trials
	c.checked += o.checked
	c.blocked += o.blocked
	c.nils += o.nils
	c.errs += o.errs
	c.otherErrs += o.otherErrs
	c.stuck += o.stuck
	c.late += o.late
	c.lost += o.lost
	c.unstored += o.unstored
	c.maxLag = max(c.maxLag, o.maxLag)
}

// lateSite is a migrated database trials run on.
type lateSite struct {
	db    *gorm.DB
	repo  *repository.Repository
	w     *waiters      // nil on SQLite
	stuck time.Duration // see lateStuck
}

// newLateSite returns a site on db, not migrated yet.
func newLateSite(t *testing.T, db *gorm.DB) *lateSite {
	t.Helper()
	s := &lateSite{db: db, repo: repository.New(db), w: lockWaiters(t, db), stuck: lateStuck}
	if db.Name() == "sqlite" {
		s.stuck = lateStuckSQLite
	}
	return s
}

// migrate migrates the site's database and creates its write log.
func (s *lateSite) migrate(ctx context.Context) error {
	if err := migrate.Up(ctx, s.db); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return createWriteLog(ctx, s.db)
}

// TestLateWrites checks that no write lands after its call returned an
// error. A call waits for a row another transaction locked (SELECT … FOR
// UPDATE on the row, or on its parent run for a create; on SQLite the
// database's write lock) when its context ends: by cancel, 20–50 ms after
// it started and once it was seen waiting (on MariaDB, which shows lock
// waits only every 0.1 s, 0.1–0.3 s), or by a 30 ms deadline. The holder
// commits 0, 1, 10 or 100 ms after the call returned, and at once the
// workflow writes the same row again, as a step that moved on would. 200
// ms after the last trial the rows are read, with the log of every
// committed write that triggers keep (see lateWrite).
//
// For each database, write, reason and delay it counts (a) calls that
// returned an error but whose write committed, (b) trials whose row does
// not hold the later write at the end (or, for a create, the blocked
// write if that call returned nil), and calls that returned nil but whose
// write never committed: all three must be 0. It runs 20 trials of each,
// on rows of their own: on a server 16 at a time; on SQLite, whose lock
// is the whole database's, one after another on a file of their own per
// 10 trials. The counts are logged as a table.
func TestLateWrites(t *testing.T) {
	dbs := []dbtest.Database{{Name: "sqlite", Open: openSQLiteFile}}
	for _, d := range servers {
		if d.Name == "mariadb" {
			// go-sql-driver/mysql logs each connection a context broke.
			d.Open = openQuietMariaDB
		}
		dbs = append(dbs, d)
		if testing.Short() {
			continue
		}
		// dbresolver chooses each statement's pool in a callback, which
		// the Repository must follow to stop the statement where it runs.
		open := d.Open
		dbs = append(dbs, dbtest.Database{Name: d.Name + "+dbresolver", Open: func(t testing.TB) *gorm.DB {
			db := open(t)
			if err := db.Use(dbresolver.Register(dbresolver.Config{})); err != nil {
				t.Fatal(err)
			}
			return db
		}})
		// PrepareStmt prepares statements on the pool as a whole.
		dbs = append(dbs, dbtest.Database{Name: d.Name + "+prepared", Open: func(t testing.TB) *gorm.DB {
			return open(t).Session(&gorm.Session{PrepareStmt: true})
		}})
	}
	for _, d := range dbs {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			start := time.Now()

			var all []*lateTrial
			var order []lateCombo
			byCombo := map[lateCombo][]*lateTrial{}
			for _, w := range lateWrites() {
				for _, reason := range lateReasons {
					for _, delay := range lateDelays {
						k := lateCombo{w.name, reason, delay}
						order = append(order, k)
						for i := range lateTrials {
							tr := &lateTrial{write: w, reason: reason, delay: delay, key: fmt.Sprintf("%s-%s-%s-%d", w.name, reason, delay, i)}
							byCombo[k] = append(byCombo[k], tr)
							all = append(all, tr)
						}
					}
				}
			}

			// Trials of a group run one after another, on its site.
			var groups [][]*lateTrial
			var sites []*lateSite
			if d.Name == "sqlite" {
				for _, k := range order {
					trials := byCombo[k]
					for i := 0; i < len(trials); i += lateSQLiteTrials {
						groups = append(groups, trials[i:min(i+lateSQLiteTrials, len(trials))])
						sites = append(sites, newLateSite(t, d.Open(t)))
					}
				}
			} else {
				db := d.Open(t)
				sqlDB, err := db.DB()
				if err != nil {
					t.Fatal(err)
				}
				sqlDB.SetMaxOpenConns(3 * lateWorkers)
				sqlDB.SetMaxIdleConns(3 * lateWorkers)
				site := newLateSite(t, db)
				if err := site.migrate(ctx); err != nil {
					t.Fatal(err)
				}
				// Every kind of trial in every group, in a random order.
				shuffled := append([]*lateTrial(nil), all...)
				rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				groups = make([][]*lateTrial, lateWorkers)
				for i, tr := range shuffled {
					groups[i%lateWorkers] = append(groups[i%lateWorkers], tr)
				}
				for range groups {
					sites = append(sites, site)
				}
			}

			// Make and prepare every trial's rows, then run the trials.
			var wg sync.WaitGroup
			errs := make([]error, len(groups))
			for g, group := range groups {
				s := sites[g]
				wg.Go(func() {
					if d.Name == "sqlite" {
						if err := s.migrate(ctx); err != nil {
							errs[g] = err
							return
						}
					}
					for _, tr := range group {
						f, err := makeRows(ctx, s.repo, "late-"+tr.key)
						if err == nil {
							err = tr.write.prepare(ctx, s.repo, f)
						}
						if err != nil {
							errs[g] = fmt.Errorf("%s: prepare: %w", tr.key, err)
							return
						}
						tr.f = f
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
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			time.Sleep(lateSettle)

			// Read the rows and the log of committed writes.
			counts := map[lateCombo]*lateCounts{}
			for _, k := range order {
				counts[k] = &lateCounts{}
			}
			var odd []string
			var log map[string]bool
			for g, group := range groups {
				s := sites[g]
				if g == 0 || s.db != sites[g-1].db {
					log = readWriteLog(t, s.db)
				}
				for _, tr := range group {
					c := counts[lateCombo{tr.write.name, tr.reason, tr.delay}]
					c.trials++
					c.maxLag = max(c.maxLag, tr.lag)
					if tr.checked {
						c.checked++
					}
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
						t.Errorf("%s: the later write: %v", tr.key, tr.later)
					}
					final, err := tr.write.final(ctx, s.repo, tr.f, tr.key)
					if err != nil {
						t.Errorf("%s: read the row: %v", tr.key, err)
					} else if final != tr.expected() {
						c.lost++
					}
				}
			}

			// The table, by reason and delay, then by write too.
			var b strings.Builder
			const head = "%-22s %-8s %5s | %6s %7s %4s %4s %5s %5s %7s | %8s %8s %8s\n"
			const line = "%-22s %-8s %5s | %6d %7s %4d %4d %5d %5d %7s | %8d %8d %8d\n"
			fmt.Fprintf(&b, "%s: %d calls blocked on a lock, in %v\n", d.Name, len(all), took.Round(10*time.Millisecond))
			fmt.Fprintf(&b, head, "write", "reason", "delay", "trials", "blocked", "nil", "err", "other", "stuck", "max lag", "(a) late", "(b) lost", "unstored")
			row := func(write, reason, delay string, c *lateCounts) {
				blocked := fmt.Sprint(c.blocked)
				if c.checked == 0 {
					blocked = "-"
				}
				fmt.Fprintf(&b, line, write, reason, delay, c.trials, blocked, c.nils, c.errs, c.otherErrs, c.stuck,
					c.maxLag.Round(time.Millisecond), c.late, c.lost, c.unstored)
			}
			total := &lateCounts{}
			for _, reason := range lateReasons {
				for _, delay := range lateDelays {
					sum := &lateCounts{}
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
			fmt.Fprintf(&b, `blocked: seen waiting for the lock when the context ended, by polling (a lower bound; - where it cannot be seen in time)
nil, err: what the call returned; other: errors that do not match the context's (context.Canceled, context.DeadlineExceeded)
stuck: returned only once the lock was freed anyway, %v after the context ended; max lag: from the context's end to the return
(a) late: returned an error, and its write committed; (b) lost: the row does not hold the later write at the end
unstored: returned nil, and its write never committed
`, sites[0].stuck)
			if len(odd) > 0 {
				fmt.Fprintf(&b, "errors that do not match the context's (other): %s\n", strings.Join(odd, "; "))
			}
			t.Logf("\n%s", b.String())

			if total.late > 0 {
				t.Errorf("%d of %d calls that returned an error had their write committed afterwards, once the lock was freed: their statement was not stopped on the server ((a) late above)", total.late, total.errs)
			}
			if total.lost > 0 {
				t.Errorf("in %d of %d trials the row does not hold the later write, made once the lock was freed: a write whose call had returned an error landed after it, or before it and kept it from applying ((b) lost above)", total.lost, total.trials)
			}
			if total.unstored > 0 {
				t.Errorf("%d of %d calls that returned nil never had their write committed (unstored above)", total.unstored, total.nils)
			}
		})
	}
}

// openSQLiteFile opens an SQLite file database of its own, in a temporary
// directory, with the README's DSN for files.
func openSQLiteFile(t testing.TB) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(sqlite.Open(fmt.Sprintf(lateSQLiteDSN, filepath.Join(t.TempDir(), "late.db"))), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sqlDB.Close() })
	return db
}
