package mariadb_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	gormmysql "gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/dialect/mariadb"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// sameDatabase opens a pool of connections to db's database with the test
// server's DSN and nothing changed.
func sameDatabase(t *testing.T, db *gorm.DB) *gorm.DB {
	t.Helper()
	var name string
	require.NoError(t, db.Raw("SELECT DATABASE()").Row().Scan(&name))
	cfg, err := mariadb.Config(dbtest.MariaDBDSN())
	require.NoError(t, err)
	cfg.DBName = name
	connector, err := mysql.NewConnector(cfg)
	require.NoError(t, err)
	sqlDB := sql.OpenDB(connector)
	t.Cleanup(func() { _ = sqlDB.Close() })
	good, err := gorm.Open(gormmysql.New(gormmysql.Config{Conn: sqlDB, DefaultDatetimePrecision: &mariadb.DatetimePrecision}), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	return good
}

// tableCount counts the tables of db's database.
func tableCount(t *testing.T, db *gorm.DB) int {
	t.Helper()
	var n int
	require.NoError(t, db.Raw("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()").Row().Scan(&n))
	return n
}

// rowCount counts the rows of the five tables.
func rowCount(t *testing.T, db *gorm.DB) int {
	t.Helper()
	total := 0
	for _, table := range []string{"feature_runs", "sandboxes", "phase_results", "agent_invocations", "cta_events"} {
		var n int
		require.NoError(t, db.Raw("SELECT COUNT(*) FROM "+table).Row().Scan(&n))
		total += n
	}
	return total
}

// requireRefused checks that a setting the package cannot keep its
// promises under is refused, naming setting and saying what to use
// instead (use): by migrate.Up, which creates nothing, and, on a schema
// another pool made, by a Repository before any statement but the read
// of the settings, whatever its first call, read or write. Nothing is
// written.
func requireRefused(t *testing.T, set func(*mysql.Config), setting, use string) {
	t.Helper()
	db := dbtest.MariaDBWith(t, set)
	refused := func(what string, err error) {
		t.Helper()
		var setErr *repository.SettingError
		if assert.ErrorAs(t, err, &setErr, "%s accepts %s", what, setting) {
			assert.ErrorIs(t, err, repository.ErrUnsupportedSetting, what)
			assert.Equal(t, setting, setErr.Setting, what)
			assert.Contains(t, err.Error(), use, "%s: the error says what to use instead", what)
		}
	}
	refused("migrate.Up", migrate.Up(t.Context(), db))
	assert.Zero(t, tableCount(t, db), "Up creates nothing")

	good := sameDatabase(t, db)
	require.NoError(t, migrate.Up(t.Context(), good))
	ref := repository.New(good)
	run, err := ref.CreateFeatureRun(t.Context(), repository.NewFeatureRun{ID: uuid.New(), Phase: "plan"})
	require.NoError(t, err)
	require.NoError(t, ref.CreateSandboxRecord(t.Context(), repository.NewSandbox{ID: "box", FeatureRunID: run, Provider: "e2b"}))
	require.NoError(t, ref.CreateCTAEvent(t.Context(), repository.NewCTAEvent{ID: "ask", FeatureRunID: run, Kind: "approval"}))
	before := rowCount(t, good)

	rec := dbtest.RecorderOf(db)
	for name, call := range calls(run) {
		repo := repository.New(db) // each first call is a Repository's first
		rec.Start()
		err := call(t.Context(), repo)
		stmts, _ := rec.Stop()
		refused(name, err)
		assert.Len(t, stmts, 1, "%s: only the read of the settings is sent: %q", name, stmts)
	}
	assert.Equal(t, before, rowCount(t, good), "nothing is written")
}

// calls are a write and every read of the Repository, by name.
func calls(run uuid.UUID) map[string]func(context.Context, *repository.Repository) error {
	return map[string]func(context.Context, *repository.Repository) error{
		"CreateSandboxRecord": func(ctx context.Context, r *repository.Repository) error {
			return r.CreateSandboxRecord(ctx, repository.NewSandbox{ID: "new", FeatureRunID: run})
		},
		"UpdateFeatureRunMemories": func(ctx context.Context, r *repository.Repository) error {
			return r.UpdateFeatureRunMemories(ctx, run, []any{"a memory"})
		},
		"GetFeatureRun": func(ctx context.Context, r *repository.Repository) error {
			got, err := r.GetFeatureRun(ctx, run)
			return wrong(got != nil && got.ID != run, got, err)
		},
		"GetSandbox": func(ctx context.Context, r *repository.Repository) error {
			got, err := r.GetSandbox(ctx, "box")
			return wrong(got != nil && got.Provider != "e2b", got, err)
		},
		"GetCTAEvent": func(ctx context.Context, r *repository.Repository) error {
			got, err := r.GetCTAEvent(ctx, "ask")
			return wrong(got != nil && got.Kind != "approval", got, err)
		},
		"GetPhaseResult": func(ctx context.Context, r *repository.Repository) error {
			_, err := r.GetPhaseResult(ctx, uuid.New())
			return err
		},
		"GetAgentInvocation": func(ctx context.Context, r *repository.Repository) error {
			_, err := r.GetAgentInvocation(ctx, uuid.New())
			return err
		},
		"RunTimeline": func(ctx context.Context, r *repository.Repository) error {
			got, err := r.RunTimeline(ctx, run)
			return wrong(got != nil && got.Run.ID != run, got, err)
		},
		"RunOutline": func(ctx context.Context, r *repository.Repository) error {
			got, err := r.RunOutline(ctx, run)
			return wrong(got != nil && got.Run.ID != run, got, err)
		},
		"ListCTAEvents": func(ctx context.Context, r *repository.Repository) error {
			got, err := r.ListCTAEvents(ctx, repository.CTAFilter{}, repository.Page{Limit: 10})
			return wrong(err == nil && (len(got.Events) != 1 || got.Events[0].ID != "ask"), got, err)
		},
		"CountFeatureRuns": func(ctx context.Context, r *repository.Repository) error {
			_, err := r.CountFeatureRuns(ctx, repository.RunFilter{}, 0)
			return err
		},
		"SummarizeRuns": func(ctx context.Context, r *repository.Repository) error {
			_, err := r.SummarizeRuns(ctx, []uuid.UUID{run})
			return err
		},
		"RunUsage": func(ctx context.Context, r *repository.Repository) error {
			_, err := r.RunUsage(ctx, run)
			return err
		},
		"ListFeatureRuns": func(ctx context.Context, r *repository.Repository) error {
			got, err := r.ListFeatureRuns(ctx, repository.RunFilter{}, repository.Page{Limit: 10})
			return wrong(err == nil && (len(got.Runs) != 1 || got.Runs[0].ID != run), got, err)
		},
		"LeakedSandboxes": func(ctx context.Context, r *repository.Repository) error {
			got, err := r.LeakedSandboxes(ctx, time.Nanosecond)
			return wrong(err == nil && (len(got) != 1 || got[0].ID != "box"), got, err)
		},
		"ExpireCTAEvents": func(ctx context.Context, r *repository.Repository) error {
			_, err := r.ExpireCTAEvents(ctx, time.Now(), 10)
			return err
		},
		"PurgeFeatureRuns": func(ctx context.Context, r *repository.Repository) error {
			_, err := r.PurgeFeatureRuns(ctx, time.Now(), 10)
			return err
		},
	}
}

// wrong returns err, or, when bad, an error showing what a read returned
// instead of what was written.
func wrong(bad bool, got any, err error) error {
	if bad {
		return fmt.Errorf("read %+v, not what was written", got)
	}
	return err
}

// TestAutocommitOffIsRefused opens connections with autocommit=0 in the
// DSN, under which every write outside a transaction would return nil and
// be rolled back when its connection closes: Up and the Repository refuse
// it.
func TestAutocommitOffIsRefused(t *testing.T) {
	requireRefused(t, withParams(map[string]string{"autocommit": "0"}), "autocommit", "autocommit=1")
}

// TestColumnsWithAliasIsRefused opens connections with
// columnsWithAlias=true, under which go-sql-driver/mysql names columns
// "sandboxes.id", which GORM matches to no field, so that GetSandbox
// returned an empty sandbox and no error: Up and the Repository refuse it,
// every read included.
func TestColumnsWithAliasIsRefused(t *testing.T) {
	requireRefused(t, func(c *mysql.Config) { c.ColumnsWithAlias = true }, "columnsWithAlias", "without columnsWithAlias")
}

// TestEmptyStringIsNullIsRefused opens connections whose sql_mode has
// EMPTY_STRING_IS_NULL, under which MariaDB stores every empty string as
// NULL, whether the driver binds it or writes it into the statement
// (interpolateParams=true), so that a sandbox with an empty provider
// failed with error 1048: Up and the Repository refuse the mode either
// way.
func TestEmptyStringIsNullIsRefused(t *testing.T) {
	mode := withParams(map[string]string{"sql_mode": "'STRICT_TRANS_TABLES,EMPTY_STRING_IS_NULL'"})
	t.Run("interpolateParams", func(t *testing.T) {
		requireRefused(t, func(c *mysql.Config) { mode(c); c.InterpolateParams = true }, "sql_mode", "remove EMPTY_STRING_IS_NULL")
	})
	t.Run("prepared", func(t *testing.T) {
		requireRefused(t, mode, "sql_mode", "remove EMPTY_STRING_IS_NULL")
	})
}
