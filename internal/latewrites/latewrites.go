// Package latewrites is the harness of the tests that look for late
// writes: a Repository call blocked on a row another transaction locked,
// whose context ends by cancel or deadline, must not have its write land
// once the lock is freed. It holds the locks, makes the calls and the later
// writes a workflow makes once it moved on, sees which writes committed
// from a log that triggers keep, and counts and tabulates what happened.
// Each test brings its own databases, the rows a trial starts from and
// what it adds to the table.
package latewrites

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// Trials is how many times each write, reason and delay is tried.
const Trials = 20

var (
	// Delays are how long after the call returned the lock holder
	// commits, freeing the row.
	Delays = []time.Duration{0, time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond}
	// Reasons are how the call's context ends.
	Reasons = []string{"cancel", "deadline"}
)

const (
	// Deadline is the timeout of a call whose reason is "deadline".
	Deadline = 30 * time.Millisecond
	// CancelMin is how long after it started a call whose reason is
	// "cancel" is cancelled at the earliest: at a random moment between
	// CancelMin and CancelMax, and not before it was seen waiting for the
	// lock (see Waiters), or its site's Stuck passed.
	CancelMin = 20 * time.Millisecond
	// CancelMax is how long after it started a call whose reason is
	// "cancel" is cancelled at the latest, unless it was not seen waiting
	// for the lock by then (see CancelMin).
	CancelMax = 50 * time.Millisecond
	// Settle is how long after the last later write the rows are read,
	// so that a statement the server still ran once it got the lock is
	// seen.
	Settle = 200 * time.Millisecond
	// Workers is how many trials run at once on a server, each on rows of
	// its own. Each holds up to three connections of the Repository's
	// pool: the call's (whose statement the server may go on running
	// after the call returned), the later write's, and on a site whose
	// Holder is the same pool the lock holder's.
	Workers = 16
)

// The statements that take the locks, in GORM's placeholders, which it
// renders for each database.
const (
	LockRun     = `SELECT 1 FROM feature_runs WHERE id = ? FOR UPDATE`
	LockSandbox = `SELECT 1 FROM sandboxes WHERE id = ? FOR UPDATE`
)

// Rows are a trial's rows: a run and a sandbox of it.
type Rows struct {
	Run     uuid.UUID
	Sandbox string
}

// Write is a write that another transaction's lock blocks, and the later
// write a workflow makes to the same row once it moved on.
//
// Every committed write leaves a mark in the table late_writes, written by
// a trigger in the write's own transaction (see WriteLogDDL), so that a
// blocked write that committed after its call returned an error is seen
// even where the later write hides it.
type Write struct {
	Name string
	// Lock takes the lock that blocks the write (see HoldLock), with
	// LockID as its var. On a site whose transactions hold the database's
	// write lock (SQLite), the holder takes none.
	Lock   string
	LockID func(f Rows) any
	// Prepare brings the rows to the state the write starts from.
	Prepare func(ctx context.Context, r *repository.Repository, f Rows) error
	// Blocked is the write whose context ends while it waits; Later is
	// the write made once the lock is free, which the row must hold at
	// the end (but see FirstWins).
	Blocked, Later func(ctx context.Context, r *repository.Repository, f Rows, key string) error
	// BlockedMark and LaterMark are the marks the two writes leave in
	// late_writes when they commit.
	BlockedMark, LaterMark func(f Rows, key string) string
	// Final is the mark of what the row holds.
	Final func(ctx context.Context, r *repository.Repository, f Rows, key string) (string, error)
	// FirstWins is whether the later write, a replay of a create, keeps
	// the blocked write when that committed first.
	FirstWins bool
}

// PhaseID is the ID of the phase result the create of a trial makes.
func PhaseID(key string) uuid.UUID { return repository.StableID(key, "late phase") }

// Writes are the writes the tests block. Each later write is allowed
// whichever of the two writes lands first: a blocked write that lands
// after it shows in the row's state, one that lands before it only in the
// write log.
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
func Writes() []Write {
	run := func(f Rows) any { return f.Run }
	phase := func(prefix string) func(f Rows, key string) string {
		return func(_ Rows, key string) string { return prefix + key }
	}
	sandbox := func(s models.SandboxStatus) func(f Rows, key string) string {
		return func(f Rows, _ string) string { return f.Sandbox + "=" + string(s) }
	}
	none := func(context.Context, *repository.Repository, Rows) error { return nil }
	return []Write{
		{
			Name: "UpdateFeatureRunPhase", Lock: LockRun, LockID: run, Prepare: none,
			Blocked: func(ctx context.Context, r *repository.Repository, f Rows, key string) error {
				return r.UpdateFeatureRunPhase(ctx, f.Run, "zombie-"+key)
			},
			Later: func(ctx context.Context, r *repository.Repository, f Rows, key string) error {
				return r.UpdateFeatureRunPhase(ctx, f.Run, "later-"+key)
			},
			BlockedMark: phase("zombie-"), LaterMark: phase("later-"),
			Final: func(ctx context.Context, r *repository.Repository, f Rows, _ string) (string, error) {
				got, err := r.GetFeatureRun(ctx, f.Run)
				if err != nil {
					return "", err
				}
				return got.Phase, nil
			},
		},
		{
			Name: "UpdateSandboxStatus", Lock: LockSandbox, LockID: func(f Rows) any { return f.Sandbox },
			Prepare: func(ctx context.Context, r *repository.Repository, f Rows) error {
				return r.UpdateSandboxStatus(ctx, f.Sandbox, models.SandboxRunning)
			},
			Blocked: func(ctx context.Context, r *repository.Repository, f Rows, _ string) error {
				return r.UpdateSandboxStatus(ctx, f.Sandbox, models.SandboxPaused)
			},
			Later: func(ctx context.Context, r *repository.Repository, f Rows, _ string) error {
				return r.UpdateSandboxStatus(ctx, f.Sandbox, models.SandboxRunning)
			},
			BlockedMark: sandbox(models.SandboxPaused), LaterMark: sandbox(models.SandboxRunning),
			Final: func(ctx context.Context, r *repository.Repository, f Rows, _ string) (string, error) {
				got, err := r.GetSandbox(ctx, f.Sandbox)
				if err != nil {
					return "", err
				}
				return f.Sandbox + "=" + string(got.Status), nil
			},
		},
		{
			Name: "CreatePhaseResult", Lock: LockRun, LockID: run, Prepare: none,
			Blocked: func(ctx context.Context, r *repository.Repository, f Rows, key string) error {
				_, err := r.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: PhaseID(key), FeatureRunID: f.Run, Phase: "zombie-" + key})
				return err
			},
			Later: func(ctx context.Context, r *repository.Repository, f Rows, key string) error {
				_, err := r.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: PhaseID(key), FeatureRunID: f.Run, Phase: "later-" + key})
				return err
			},
			BlockedMark: phase("zombie-"), LaterMark: phase("later-"),
			Final: func(ctx context.Context, r *repository.Repository, _ Rows, key string) (string, error) {
				got, err := r.GetPhaseResult(ctx, PhaseID(key))
				if err != nil {
					return "", err
				}
				return got.Phase, nil
			},
			FirstWins: true,
		},
	}
}

// WriteLogDDL creates, after migrate.Up, the table late_writes and the
// triggers that mark in it each committed write of Writes, by the name of
// GORM's dialector: a run's phase and a sandbox's "<id>=<status>" on every
// update, a phase result's phase on every insert. A trigger's row commits,
// or rolls back, with the statement that fired it. The table has no key,
// so its inserts wait for no lock (on MariaDB not even the AUTO-INC lock).
var WriteLogDDL = map[string][]string{
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

// CreateWriteLog creates late_writes and its triggers on db.
func CreateWriteLog(ctx context.Context, db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	ddl, ok := WriteLogDDL[db.Name()]
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

// ReadWriteLog returns the marks of every write committed so far on db.
func ReadWriteLog(t testing.TB, db *gorm.DB) map[string]bool {
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

// HoldLock begins a transaction on db that takes lock, with id as its one
// var, and returns it holding the lock until it commits or rolls back. An
// empty lock takes nothing beyond what BEGIN takes: on an SQLite file
// opened with _txlock=immediate, the database's write lock, which every
// other connection's write waits for.
func HoldLock(ctx context.Context, db *gorm.DB, lock string, id any) (*gorm.DB, error) {
	tx := db.WithContext(ctx).Begin()
	if tx.Error != nil {
		return nil, tx.Error
	}
	if lock != "" {
		if err := tx.Exec(lock, id).Error; err != nil {
			return nil, errors.Join(err, tx.Rollback().Error)
		}
	}
	return tx, nil
}

// Warm makes sure that db's pool has n idle connections, so that the
// calls of a trial do not wait for a connection to be made: a connection
// that a call's context broke is closed, and making one takes a good part
// of a 30 ms deadline.
func Warm(ctx context.Context, db *gorm.DB, n int) error {
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

// Waiters sees, on a server, a statement waiting for the locks of the
// session whose ID the statement HolderID returns on it. Polling runs on
// connections of its own, outside the test's pool, so that it never takes
// the connection a blocked call waits for.
type Waiters struct {
	HolderID string
	// Instant is whether a wait is seen within milliseconds, so that a
	// call with a 30 ms deadline can be seen blocked.
	Instant bool
	// Watch closes the channel it returns once a statement is seen
	// waiting for holder's locks; it stops looking once ctx ends.
	Watch func(ctx context.Context, holder int64) <-chan struct{}
}

// PostgresWaiters sees statements waiting for the locks of PostgreSQL
// sessions by polling pg_locks, which shows lock waits as they happen, on
// admin, a direct connection to the server, every 3 ms while any session
// is watched, until ctx ends. One query serves every watcher: one per
// watcher, sixteen every 3 ms, kept the server busier than the trials.
func PostgresWaiters(ctx context.Context, admin *sql.DB) *Waiters {
	return &Waiters{
		HolderID: `SELECT pg_backend_pid()`,
		Instant:  true,
		Watch:    PollBlockers(ctx, admin, 3*time.Millisecond, `SELECT DISTINCT b FROM pg_locks, unnest(pg_blocking_pids(pid)) AS b WHERE NOT granted`),
	}
}

// PollBlockers returns a Watch for Waiters that runs blockers on admin
// every period while any holder is watched, until ctx ends: blockers
// returns the IDs of the sessions whose locks statements wait for.
func PollBlockers(ctx context.Context, admin *sql.DB, period time.Duration, blockers string) func(ctx context.Context, holder int64) <-chan struct{} {
	var mu sync.Mutex
	watched := map[int64]chan struct{}{}
	go func() {
		for ctx.Err() == nil {
			time.Sleep(period)
			mu.Lock()
			n := len(watched)
			mu.Unlock()
			if n == 0 {
				continue
			}
			rs, err := admin.QueryContext(ctx, blockers)
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
	return func(ctx context.Context, holder int64) <-chan struct{} {
		seen := make(chan struct{})
		mu.Lock()
		watched[holder] = seen
		mu.Unlock()
		context.AfterFunc(ctx, func() {
			mu.Lock()
			defer mu.Unlock()
			if watched[holder] == seen {
				delete(watched, holder)
			}
		})
		return seen
	}
}
