package reliability_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/plugin/dbresolver"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/latewrites"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

const (
	// lateStuck is how long after its context ended a call may go on
	// waiting for the lock before the holder frees it anyway: the call is
	// then stuck, returning only once the lock is free. On SQLite, whose
	// statements all wait so (sqlite3_interrupt does not end the busy
	// handler's wait for the lock), it is shorter, to keep the test fast.
	lateStuck, lateStuckSQLite = 2 * time.Second, 300 * time.Millisecond
	// lateSQLiteTrials is how many trials run, one after another, on each
	// SQLite file.
	lateSQLiteTrials = 10
	// lateSQLiteDSN is the README's DSN for an SQLite file, with %s its
	// path: BEGIN takes the write lock (_txlock=immediate), and a write
	// waits up to 5 s for it.
	lateSQLiteDSN = "file:%s?_foreign_keys=on&_journal_mode=WAL&_busy_timeout=5000&_txlock=immediate"
	// lateShortTrials is how many times, under -short, each write, reason
	// and delay is tried: 120 calls per database, where the code before
	// the fix let 332 of 480 land late on PostgreSQL and 266 on MariaDB.
	lateShortTrials = 5
)

// lockWaiters returns the waiters of db's server; nil on SQLite, whose lock
// waits nothing shows.
func lockWaiters(t *testing.T, db *gorm.DB) *latewrites.Waiters {
	switch db.Name() {
	case "postgres":
		return latewrites.PostgresWaiters(t.Context(), dbtest.PostgresServer(t))
	case "mysql":
		return mariaDBWaiters(t.Context(), dbtest.MariaDBServer(t))
	}
	return nil
}

// mariaDBWaits is how often mariaDBWaiters reads InnoDB's lock waits.
// InnoDB refreshes the cache behind information_schema.innodb_trx and
// innodb_lock_waits only when it was not read for 0.1 s: read more often,
// they never change.
const mariaDBWaits = 120 * time.Millisecond

// mariaDBWaiters reads, every mariaDBWaits while any holder is watched,
// which sessions' locks statements wait for.
func mariaDBWaiters(ctx context.Context, admin *sql.DB) *latewrites.Waiters {
	return &latewrites.Waiters{
		HolderID: `SELECT CONNECTION_ID()`,
		Watch: latewrites.PollBlockers(ctx, admin, mariaDBWaits, `SELECT DISTINCT b.trx_mysql_thread_id FROM information_schema.innodb_lock_waits AS w
				JOIN information_schema.innodb_trx AS b ON b.trx_id = w.blocking_trx_id`),
	}
}

// newLateSite returns a site on db, not migrated yet.
func newLateSite(t *testing.T, db *gorm.DB) *latewrites.Site {
	t.Helper()
	repo := repository.New(db)
	s := &latewrites.Site{
		Repo: repo, Pool: db, Holder: db, Plain: repo,
		Waiters: lockWaiters(t, db), Stuck: lateStuck,
		MakeRows: func(ctx context.Context, key string) (latewrites.Rows, error) {
			f, err := makeRows(ctx, repo, "late-"+key)
			return latewrites.Rows{Run: f.run, Sandbox: f.sandbox}, err
		},
	}
	if db.Name() == "sqlite" {
		s.WholeDatabase = true // BEGIN takes the database's write lock
		s.Stuck = lateStuckSQLite
	}
	return s
}

// migrateLateSite migrates the site's database and creates its write log.
func migrateLateSite(ctx context.Context, s *latewrites.Site) error {
	if err := migrate.Up(ctx, s.Holder); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return latewrites.CreateWriteLog(ctx, s.Holder)
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
// committed write that triggers keep (see latewrites.Write).
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
	// A server's variants take turns: each holds 3×Workers connections,
	// and three at once would pass PostgreSQL's 100.
	servers := map[string]*sync.Mutex{}
	for _, d := range dbs {
		server, _, _ := strings.Cut(d.Name, "+")
		if servers[server] == nil {
			servers[server] = &sync.Mutex{}
		}
	}
	for _, d := range dbs {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			server, _, _ := strings.Cut(d.Name, "+")
			if server != "sqlite" {
				servers[server].Lock()
				defer servers[server].Unlock()
			}
			ctx := t.Context()
			start := time.Now()

			trials := latewrites.Trials
			if testing.Short() {
				trials = lateShortTrials
			}
			all, order := latewrites.NewTrials("", trials)

			// Trials of a group run one after another, on its site.
			var groups []latewrites.Group
			if d.Name == "sqlite" {
				byCombo := map[latewrites.Combo][]*latewrites.Trial{}
				for _, tr := range all {
					byCombo[tr.Combo()] = append(byCombo[tr.Combo()], tr)
				}
				for _, k := range order {
					trials := byCombo[k]
					for i := 0; i < len(trials); i += lateSQLiteTrials {
						s := newLateSite(t, d.Open(t))
						groups = append(groups, latewrites.Group{
							Site: s, Trials: trials[i:min(i+lateSQLiteTrials, len(trials))],
							Setup: func(ctx context.Context) error { return migrateLateSite(ctx, s) },
						})
					}
				}
			} else {
				db := d.Open(t)
				sqlDB, err := db.DB()
				if err != nil {
					t.Fatal(err)
				}
				sqlDB.SetMaxOpenConns(3 * latewrites.Workers)
				sqlDB.SetMaxIdleConns(3 * latewrites.Workers)
				site := newLateSite(t, db)
				if err := migrateLateSite(ctx, site); err != nil {
					t.Fatal(err)
				}
				for _, trials := range latewrites.Deal(all, latewrites.Workers) {
					groups = append(groups, latewrites.Group{Site: site, Trials: trials})
				}
			}

			// Make and prepare every trial's rows, then run the trials.
			if err := latewrites.Run(ctx, groups); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			time.Sleep(latewrites.Settle)

			// Read the rows and the log of committed writes.
			tally := latewrites.NewTally(order)
			tally.Explain = true
			tally.BlockedLegend = "seen waiting for the lock when the context ended, by polling (a lower bound; - where it cannot be seen in time)"
			tally.CountGroups(t, groups)

			// The table, by reason and delay, then by write too.
			var b strings.Builder
			fmt.Fprintf(&b, "%s: %d calls blocked on a lock, in %v\n", d.Name, len(all), took.Round(10*time.Millisecond))
			total := tally.Table(&b, groups[0].Site.Stuck)
			t.Logf("\n%s", b.String())
			tally.Check(t, total)
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
