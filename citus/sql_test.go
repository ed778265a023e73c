package citus_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
)

// TestSQLFilesOnCitus sends each of PostgreSQL's versioned migrate/sql
// files whole, in order, as golang-migrate does, to a distributed schema
// of its own: Citus must accept every one, and they must make the catalog
// migrate.Up makes there. Sent again, the files moved out of older ones
// must change nothing, as for a database already past them.
func TestSQLFilesOnCitus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "migrate", "sql", "postgres", "*.up.sql"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	slices.Sort(files)

	byUp := dbtest.Citus(t)
	require.NoError(t, migrate.Up(t.Context(), byUp, migrate.InSchema(dbtest.TenantSchema(byUp))))
	want := dbtest.Catalog(t, byUp)
	require.NotEmpty(t, want)

	db := dbtest.Citus(t)
	schema := dbtest.TenantSchema(db)
	for _, f := range files {
		execWhole(t, db, f)
	}
	assert.Equal(t, want, dbtest.Catalog(t, db), "the files make what migrate.Up makes")
	var distributed int64
	require.NoError(t, db.Raw("SELECT count(*) FROM pg_dist_schema WHERE schemaid = ?::regnamespace", schema).Scan(&distributed).Error)
	assert.EqualValues(t, 1, distributed, "schema %s is a distributed schema", schema)
	var placed int64
	require.NoError(t, db.Raw(`SELECT count(*) FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid
		WHERE c.relnamespace = ?::regnamespace`, schema).Scan(&placed).Error)
	assert.EqualValues(t, 5, placed, "every table of %s is a Citus table", schema)

	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.HasPrefix(string(b), "-- Moved out of ") {
			execWhole(t, db, f)
		}
	}
	assert.Equal(t, want, dbtest.Catalog(t, db), "the moved statements, sent again, change nothing")
	require.NoError(t, migrate.Up(t.Context(), db, migrate.InSchema(schema)))
	assert.Equal(t, want, dbtest.Catalog(t, db), "Up finds the schema up to date")
}

// execWhole sends the file at path as one query string, in the simple
// protocol, as a tool that applies files whole does.
func execWhole(t *testing.T, db *gorm.DB, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	_, err = sqlDB.ExecContext(t.Context(), string(b))
	require.NoError(t, err, "Citus takes %s whole", filepath.Base(path))
}
