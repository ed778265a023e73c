package mariadb_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
)

// TestUpRefusesAnAutoMigratedSchema runs Up on the schema GORM's
// AutoMigrate makes of the models, which an earlier user may have run:
// its IDs and names are utf8mb4_general_ci, in which "box" is "Box", and
// its UUIDs MariaDB's uuid type. Up refused nothing and changed nothing,
// so that "box" after "Box" was a silent replay; it now refuses the
// schema with a *SchemaError naming each column, its collation or type
// and the one Up makes, and still changes nothing.
func TestUpRefusesAnAutoMigratedSchema(t *testing.T) {
	db := dbtest.MariaDB(t)
	require.NoError(t, db.AutoMigrate(migrate.Models()...))
	before := dbtest.Catalog(t, db)

	err := migrate.Up(t.Context(), db)
	require.Error(t, err, "Up accepts a schema whose IDs ignore case")
	var schemaErr *migrate.SchemaError
	require.ErrorAs(t, err, &schemaErr)
	assert.ErrorIs(t, err, migrate.ErrSchemaMismatch)
	assert.Contains(t, schemaErr.Columns, migrate.ColumnMismatch{Table: "sandboxes", Column: "id",
		Got: "varchar(255) utf8mb4_general_ci", Want: "varchar(255) utf8mb4_nopad_bin"})
	assert.Contains(t, schemaErr.Columns, migrate.ColumnMismatch{Table: "cta_events", Column: "id",
		Got: "varchar(255) utf8mb4_general_ci", Want: "varchar(255) utf8mb4_nopad_bin"})
	assert.Contains(t, schemaErr.Columns, migrate.ColumnMismatch{Table: "feature_runs", Column: "id",
		Got: "uuid", Want: "char(36) ascii_bin"})
	assert.Contains(t, err.Error(), "agent_invocations.agent is varchar(255) utf8mb4_general_ci, want varchar(255) utf8mb4_nopad_bin", "the message lists the first columns, in order")
	assert.Contains(t, err.Error(), "schema.sql", "the error says what to do")
	for _, c := range schemaErr.Columns {
		assert.NotContains(t, []string{"memories", "metadata", "error", "created_at"}, c.Column, "%s.%s is as Up makes it", c.Table, c.Column)
	}
	assert.Equal(t, before, dbtest.Catalog(t, db), "Up changes nothing")
	t.Logf("%d columns refused: %v", len(schemaErr.Columns), err)
}

// TestUpRefusesOneWrongColumn makes the schema with Up, then gives one
// column another collation, as a hand-made change might: Up refuses it.
func TestUpRefusesOneWrongColumn(t *testing.T) {
	db := dbtest.MariaDB(t)
	require.NoError(t, migrate.Up(t.Context(), db))
	require.NoError(t, db.Exec("ALTER TABLE phase_results MODIFY phase varchar(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL").Error)
	err := migrate.Up(t.Context(), db)
	var schemaErr *migrate.SchemaError
	require.ErrorAs(t, err, &schemaErr)
	assert.Equal(t, []migrate.ColumnMismatch{{Table: "phase_results", Column: "phase", Got: "varchar(255) utf8mb4_bin", Want: "varchar(255) utf8mb4_nopad_bin"}}, schemaErr.Columns)
}
