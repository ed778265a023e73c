package stack_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// sqliteFileDSN is the DSN the README recommends for an SQLite file, with
// %s its path. _txlock=immediate makes every transaction begin with BEGIN
// IMMEDIATE, which takes the write lock at once, waiting up to
// _busy_timeout for it. A transaction begun with the default BEGIN DEFERRED
// that reads and then writes asks for the write lock only at its first
// write, holding a read snapshot. SQLite then refuses at once, without
// waiting, as waiting could deadlock or would leave the snapshot stale:
// "database is locked" (SQLITE_BUSY while another connection holds the
// write lock, SQLITE_BUSY_SNAPSHOT if one committed since the read).
const sqliteFileDSN = "file:%s?_foreign_keys=on&_journal_mode=WAL&_busy_timeout=5000&_txlock=immediate"

// The SQLite workload: this many goroutines each run this many
// transactions that read a run and then write it.
const (
	sqliteWorkers      = 16
	sqliteTransactions = 20
)

// sqliteBusyTimeout is the _busy_timeout of sqliteFileDSN.
const sqliteBusyTimeout = 5 * time.Second

// transaction is the outcome of one transaction of readThenWrite, and how
// long it took.
type transaction struct {
	err  error
	took time.Duration
}

// TestSQLiteWAL runs transactions that read then write from concurrent
// goroutines on an SQLite file opened with the README's DSN, and shows that
// without _txlock=immediate the same workload fails.
func TestSQLiteWAL(t *testing.T) {
	t.Parallel()
	t.Run("ImmediateTransactions", func(t *testing.T) {
		dsn := fmt.Sprintf(sqliteFileDSN, filepath.Join(t.TempDir(), "app.db"))
		txs := readThenWrite(t, dsn)
		// A transaction queues for the write lock within the busy
		// timeout: on a machine loaded enough that others hold the lock
		// for all of it, it fails then, as the README says. Refused
		// before, it failed for another reason.
		var failed []error
		timedOut := 0
		for _, tx := range txs {
			switch {
			case tx.err == nil:
			case isBusy(tx.err) && tx.took >= sqliteBusyTimeout:
				timedOut++
			default:
				failed = append(failed, tx.err)
			}
		}
		if len(failed) > 0 {
			t.Errorf("%d of %d transactions failed before the busy timeout; the first: %v", len(failed), len(txs), failed[0])
		}
		if timedOut > 0 {
			t.Logf("%d of %d transactions waited the whole busy timeout for the write lock", timedOut, len(txs))
		}
		assert.Less(t, timedOut, len(txs)/2, "most transactions get the write lock within the busy timeout")
	})

	t.Run("DeferredTransactionsAreLocked", func(t *testing.T) {
		dsn := strings.Replace(fmt.Sprintf(sqliteFileDSN, filepath.Join(t.TempDir(), "app.db")), "&_txlock=immediate", "", 1)
		txs := readThenWrite(t, dsn)
		var failed, locked int
		for _, tx := range txs {
			if tx.err == nil {
				continue
			}
			failed++
			if isBusy(tx.err) {
				locked++
			}
		}
		t.Logf("without _txlock=immediate: %d of %d transactions failed, %d of them with \"database is locked\"", failed, len(txs), locked)
		assert.Positive(t, locked, "deferred transactions that read then write fail with \"database is locked\"")
	})
}

// isBusy reports whether err is SQLite's "database is locked".
func isBusy(err error) bool {
	var sqliteErr sqlite3.Error
	return errors.As(err, &sqliteErr) && sqliteErr.Code == sqlite3.ErrBusy
}

// readThenWrite opens GORM on dsn and migrates it, then runs
// sqliteTransactions transactions from each of sqliteWorkers goroutines,
// each on a run of its own, and returns their outcomes. A transaction reads
// the run, checks that it sees the phase the last committed one wrote, then
// appends a memory and moves the run to the next phase. It checks that each
// run ends with the memories of its transactions that returned nil.
func readThenWrite(t *testing.T, dsn string) []transaction {
	t.Helper()
	db, err := gorm.Open(sqlite.Open(dsn), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	t.Cleanup(func() { _ = sqlDB.Close() })
	ctx := t.Context()
	require.NoError(t, migrate.Up(ctx, db))
	repo := repository.New(db)

	runs := make([]repository.NewFeatureRun, sqliteWorkers)
	for w := range runs {
		runs[w] = repository.NewFeatureRun{ID: repository.StableID("sqlite", fmt.Sprint(w)), Phase: "phase -1"}
		_, err := repo.CreateFeatureRun(ctx, runs[w])
		require.NoError(t, err)
	}

	txs := make([][]transaction, sqliteWorkers)
	memories := make([][]any, sqliteWorkers)
	start := time.Now()
	dbtest.Concurrently(sqliteWorkers, func(w int) error {
		id, phase := runs[w].ID, runs[w].Phase
		memories[w] = []any{}
		for i := range sqliteTransactions {
			memory, next := fmt.Sprintf("memory %d", i), fmt.Sprintf("phase %d", i)
			began := time.Now()
			err := repo.Transaction(ctx, func(tx *repository.Repository) error {
				run, err := tx.GetFeatureRun(ctx, id)
				if err != nil {
					return err
				}
				if run.Phase != phase {
					return fmt.Errorf("read phase %q, want %q, written by the last transaction that committed", run.Phase, phase)
				}
				if err := tx.UpdateFeatureRunMemories(ctx, id, []any{memory}); err != nil {
					return err
				}
				return tx.UpdateFeatureRunPhase(ctx, id, next)
			})
			if err == nil {
				memories[w], phase = append(memories[w], memory), next
			}
			txs[w] = append(txs[w], transaction{err: err, took: time.Since(began)})
		}
		return nil
	})
	t.Logf("%d transactions in %v", sqliteWorkers*sqliteTransactions, time.Since(start).Round(time.Millisecond))

	var all []transaction
	for w, run := range runs {
		got, err := repo.GetFeatureRun(ctx, run.ID)
		require.NoError(t, err)
		want, err := json.Marshal(memories[w])
		require.NoError(t, err)
		assert.JSONEq(t, string(want), string(got.Memories), "run %d holds the memories of the transactions that committed, in order", w)
		all = append(all, txs[w]...)
	}
	return all
}
