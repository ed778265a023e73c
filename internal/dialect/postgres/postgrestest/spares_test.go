package postgrestest_test

import (
	"database/sql"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	gormpostgres "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/internal/dialect/postgres/postgrestest"
	"github.com/agentpipeline/persistence/migrate"
)

// TestMigratedReusesOnlySchemasLeftAsMigrated checks that a schema a test
// was done with goes to the next test emptied, and only when it kept the
// shape migrate made: a test that changed it in any way the next could
// see makes it go.
func TestMigratedReusesOnlySchemasLeftAsMigrated(t *testing.T) {
	dsn := postgrestest.Test.DSN()
	admin := postgrestest.Admin(t, dsn)
	migrated := func(t *testing.T) (*gorm.DB, string) {
		t.Helper()
		sqlDB, schema := postgrestest.Migrated(t, dsn, func(sqlDB *sql.DB, _ string) error {
			db, err := gorm.Open(gormpostgres.New(gormpostgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
			if err != nil {
				return err
			}
			return migrate.Up(t.Context(), db)
		})
		db, err := gorm.Open(gormpostgres.New(gormpostgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
		require.NoError(t, err)
		var current string
		require.NoError(t, db.Raw("SELECT current_schema()").Scan(&current).Error)
		require.Equal(t, schema, current, "the pool works in the schema Migrated names")
		return db, schema
	}
	exists := func(schema string) bool {
		var n int
		require.NoError(t, admin.QueryRow("SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema).Scan(&n))
		return n == 1
	}
	t.Cleanup(func() {
		assert.NoError(t, postgrestest.DropSpares())
	})

	var first string
	t.Run("LeftAsMigrated", func(t *testing.T) {
		var db *gorm.DB
		db, first = migrated(t)
		require.NoError(t, db.Exec(`INSERT INTO feature_runs (id, phase, status, memories, created_at, updated_at)
			VALUES (gen_random_uuid(), 'plan', 'running', '[]', now(), now())`).Error)
	})
	require.True(t, exists(first), "a schema left as migrated is kept")
	t.Run("GoesToTheNextTestEmpty", func(t *testing.T) {
		db, schema := migrated(t)
		assert.Equal(t, first, schema, "the spare is reused")
		var rows int
		require.NoError(t, db.Raw("SELECT count(*) FROM feature_runs").Scan(&rows).Error)
		assert.Zero(t, rows, "and empty")
	})

	for _, change := range []struct{ name, sql string }{
		{"TriggerAdded", `CREATE FUNCTION skip() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
			CREATE TRIGGER skip BEFORE UPDATE ON feature_runs FOR EACH ROW EXECUTE FUNCTION skip()`},
		{"FunctionAdded", `CREATE FUNCTION one() RETURNS int LANGUAGE sql AS 'SELECT 1'`},
		{"ColumnDroppedAndAddedBack", `ALTER TABLE sandboxes DROP COLUMN step; ALTER TABLE sandboxes ADD COLUMN step bigint`},
		{"DefaultSet", `ALTER TABLE feature_runs ALTER COLUMN phase SET DEFAULT 'plan'`},
		{"IndexAdded", `CREATE INDEX extra ON cta_events (kind)`},
		{"ConstraintAdded", `ALTER TABLE feature_runs ADD CONSTRAINT short_phase CHECK (length(phase) < 100)`},
		{"ForeignKeysDisabled", `ALTER TABLE sandboxes DISABLE TRIGGER ALL`},
		{"PrivilegeRevoked", `REVOKE UPDATE ON feature_runs FROM PUBLIC; GRANT SELECT ON feature_runs TO pg_monitor`},
		{"RowSecurityOn", `ALTER TABLE feature_runs ENABLE ROW LEVEL SECURITY`},
		{"Analyzed", `INSERT INTO feature_runs (id, phase, status, memories, created_at, updated_at)
			VALUES (gen_random_uuid(), 'plan', 'running', '[]', now(), now()); ANALYZE feature_runs`},
		{"TableAdded", `CREATE TABLE extra (id int)`},
	} {
		var schema string
		t.Run(change.name, func(t *testing.T) {
			var db *gorm.DB
			db, schema = migrated(t)
			require.NoError(t, db.Exec(change.sql).Error)
		})
		assert.False(t, exists(schema), "%s: the changed schema is dropped, not kept", change.name)
	}
}
