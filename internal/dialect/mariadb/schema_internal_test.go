package mariadb

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDeclarations reads the columns the migration files declare, as
// migrate compares them with the catalog: every column of every table,
// with its type as the catalog writes it and, for char and varchar, its
// collation, the table's where the column names none.
func TestDeclarations(t *testing.T) {
	stmts, err := statements(os.DirFS("../../../migrate/sql/mariadb"))
	require.NoError(t, err)
	got := declarations(stmts)
	assert.Len(t, got, 5)
	assert.Len(t, got["feature_runs"], 10)
	assert.Len(t, got["agent_invocations"], 27)
	assert.Equal(t, declared{typ: "char(36)", collation: "ascii_bin"}, got["feature_runs"]["id"])
	assert.Equal(t, declared{typ: "varchar(255)", collation: "utf8mb4_nopad_bin"}, got["sandboxes"]["id"])
	assert.Equal(t, declared{typ: "varchar(16)", collation: "utf8mb4_nopad_bin"}, got["cta_events"]["status"])
	assert.Equal(t, declared{typ: "longtext"}, got["feature_runs"]["memories"])
	assert.Equal(t, declared{typ: "datetime(6)"}, got["cta_events"]["expires_at"])
	assert.Equal(t, declared{typ: "bigint"}, got["sandboxes"]["step"], "a column an ALTER TABLE adds")
	assert.NotContains(t, got["feature_runs"], "PRIMARY")
	assert.NotContains(t, got["agent_invocations"], "CONSTRAINT")
}
