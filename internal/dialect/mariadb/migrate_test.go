package mariadb

import (
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStatements checks which statements a migration file may hold: each
// creates one table or adds one column, in a form whose effect migrate can
// read in the catalog.
func TestStatements(t *testing.T) {
	files := fstest.MapFS{
		"000001_a.up.sql": {Data: []byte("-- tables\nCREATE TABLE IF NOT EXISTS `t` (\n\t`id` bigint NOT NULL\n);\n")},
		"000002_b.up.sql": {Data: []byte("-- a column\nALTER TABLE `t` ADD COLUMN IF NOT EXISTS `c` decimal(10,2) NULL;\nALTER TABLE u ADD COLUMN IF NOT EXISTS d bigint NULL, ALGORITHM=INSTANT;\n")},
		"000003_c.up.sql": {Data: []byte("-- an index\nCREATE INDEX IF NOT EXISTS `i` ON `t` (`c`, `id`) ALGORITHM=INPLACE LOCK=NONE;\nCREATE UNIQUE INDEX IF NOT EXISTS j ON u(d);\n")},
		"schema.sql":      {Data: []byte("DROP TABLE t;\n")},
	}
	got, err := statements(files)
	require.NoError(t, err)
	assert.Equal(t, []statement{
		{table: "t", sql: "CREATE TABLE IF NOT EXISTS `t` (\n\t`id` bigint NOT NULL\n)"},
		{table: "t", column: "c", sql: "ALTER TABLE `t` ADD COLUMN IF NOT EXISTS `c` decimal(10,2) NULL"},
		{table: "u", column: "d", sql: "ALTER TABLE u ADD COLUMN IF NOT EXISTS d bigint NULL, ALGORITHM=INSTANT"},
		{table: "t", index: "i", sql: "CREATE INDEX IF NOT EXISTS `i` ON `t` (`c`, `id`) ALGORITHM=INPLACE LOCK=NONE"},
		{table: "u", index: "j", sql: "CREATE UNIQUE INDEX IF NOT EXISTS j ON u(d)"},
	}, got)

	for _, s := range []string{
		"CREATE TABLE `t` (`id` bigint)",
		"ALTER TABLE `t` ADD COLUMN `c` bigint NULL",
		"ALTER TABLE `t` ADD COLUMN IF NOT EXISTS `c` bigint NULL, ADD COLUMN IF NOT EXISTS `d` bigint NULL",
		"ALTER TABLE `t` ADD COLUMN IF NOT EXISTS `c` bigint NULL, DROP COLUMN `d`",
		"ALTER TABLE `t` MODIFY `c` bigint NOT NULL",
		"CREATE INDEX `i` ON `t` (`c`)",
		"CREATE OR REPLACE INDEX `i` ON `t` (`c`)",
		"ALTER TABLE `t` ADD INDEX `i` (`c`)",
		"DROP INDEX `i` ON `t`",
		"DROP TABLE `t`",
	} {
		_, err := statements(fstest.MapFS{"000001_a.up.sql": {Data: []byte(s + ";\n")}})
		assert.Error(t, err, s)
	}
}
