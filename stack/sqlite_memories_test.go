package stack_test

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// TestSQLiteBigAppendDoesNotLockOthersOut appends 100 values to a run
// holding 10,000 memories on an SQLite file database while another run
// completes: SQLite has one writer at a time, so the append holds the
// write lock for as long as it runs, and the other write waits at most
// the busy timeout before it fails with "database is locked".
func TestSQLiteBigAppendDoesNotLockOthersOut(t *testing.T) {
	t.Parallel()
	db, err := gorm.Open(sqlite.Open(fmt.Sprintf(sqliteFileDSN, filepath.Join(t.TempDir(), "app.db"))), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	t.Cleanup(func() { _ = sqlDB.Close() })
	ctx := t.Context()
	require.NoError(t, migrate.Up(ctx, db))
	repo := repository.New(db)

	big, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan"})
	require.NoError(t, err)
	stored := make([]any, 10_000)
	for i := range stored {
		stored[i] = map[string]any{"fact": "stored", "n": strconv.Itoa(i)}
	}
	require.NoError(t, repo.UpdateFeatureRunMemories(ctx, big, stored))
	other, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan"})
	require.NoError(t, err)
	added := make([]any, 100)
	for i := range added {
		added[i] = "new " + strconv.Itoa(i)
	}

	var took time.Duration
	errs := dbtest.Concurrently(2, func(i int) error {
		if i == 0 {
			start := time.Now()
			defer func() { took = time.Since(start) }()
			return repo.UpdateFeatureRunMemories(ctx, big, added)
		}
		return repo.CompleteFeatureRun(ctx, other)
	})
	require.NoError(t, errs[0], "the append")
	require.NoError(t, errs[1], "the write to another run waits for the append, within the busy timeout")
	t.Logf("the append held the write lock for %v", took)
	got, err := repo.GetFeatureRun(ctx, big)
	require.NoError(t, err)
	assert.Greater(t, len(got.Memories), 10_000*len(`{"fact":"stored","n":"0"}`), "the values were appended")
}
