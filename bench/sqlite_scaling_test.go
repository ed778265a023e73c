package bench

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/mattn/go-sqlite3"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// BenchmarkSQLiteAppendScaling measures, on an SQLite file database opened
// as the README recommends, an append of one new value to a run that
// already holds 10, 1,000, 10,000 or 20,000 memories: the time must grow
// linearly with the stored memories, not with their square. There is no
// hand-written side: the scaling, not the client's overhead, is the point.
func BenchmarkSQLiteAppendScaling(b *testing.B) {
	db, err := gorm.Open(sqlite.Open("file:"+filepath.Join(b.TempDir(), "bench.db")+
		"?_foreign_keys=on&_journal_mode=WAL&_busy_timeout=5000&_txlock=immediate"), &gorm.Config{Logger: discardLogger})
	if err != nil {
		b.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sqlDB.Close() })
	if err := migrate.Up(b.Context(), db); err != nil {
		b.Fatal(err)
	}
	repo := repository.New(db)
	for _, stored := range []int{10, 1_000, 10_000, 20_000} {
		b.Run("stored="+strconv.Itoa(stored)+"/impl="+implRepository, func(b *testing.B) {
			ctx := b.Context()
			runs := seedSQLiteRuns(b, sqlDB, min(b.N, max(1, scalingSeedBudget/stored)), stored)
			values := make([][]any, b.N)
			for i := range values {
				values[i] = []any{fmt.Sprintf("learned %d", i)}
			}
			measure(b, &ioCounter{}, func(i int) error {
				return repo.UpdateFeatureRunMemories(ctx, runs[i%len(runs)], values[i])
			})
		})
	}
}

// seedSQLiteRuns inserts n running runs holding stored memories each.
func seedSQLiteRuns(b *testing.B, db *sql.DB, n, stored int) []uuid.UUID {
	b.Helper()
	memories := make([]string, stored)
	for i := range memories {
		memories[i] = "stored " + strconv.Itoa(i+1)
	}
	text, err := json.Marshal(memories)
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]uuid.UUID, n)
	now := time.Now().UTC()
	for i := range ids {
		ids[i] = uuid.New()
		if _, err := db.ExecContext(b.Context(), `INSERT INTO feature_runs (id, phase, status, memories, created_at, updated_at) VALUES (?, 'plan', 'running', ?, ?, ?)`,
			ids[i].String(), string(text), now, now); err != nil {
			b.Fatal(err)
		}
	}
	return ids
}
