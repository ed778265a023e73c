package migrate_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
)

var ddl = regexp.MustCompile(`(?i)^\s*(CREATE|ALTER|DROP)\b`)

const regenerate = "regenerate migrate/sql with scripts/schema-sql.sh"

// upNoDDL runs Up on db and fails t if Up changed the schema: it must find
// the schema up to date. It returns the statements Up sent.
func upNoDDL(t *testing.T, db *gorm.DB) []string {
	t.Helper()
	rec := dbtest.RecorderOf(db)
	rec.Start()
	require.NoError(t, migrate.Up(t.Context(), db))
	stmts, _ := rec.Stop()
	require.NotEmpty(t, stmts, "the recorder saw Up")
	for _, s := range stmts {
		assert.NotRegexp(t, ddl, s, "Up finds the schema up to date")
	}
	return stmts
}

// execFile runs the SQL file path on db: whole, or on MariaDB, whose
// driver sends one statement at a time unless told otherwise
// (multiStatements), statement by statement.
func execFile(t *testing.T, db *gorm.DB, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	stmts := []string{string(b)}
	if db.Dialector.Name() == "mysql" {
		stmts = strings.Split(string(b), ";\n")
	}
	for _, s := range stmts {
		if strings.TrimSpace(s) != "" {
			require.NoError(t, db.WithContext(t.Context()).Exec(s).Error, "run %s", path)
		}
	}
}

// TestSQLFiles checks the files in migrate/sql against migrate.Up, on
// every database: schema.sql, and the versioned migrations run in order,
// each make on an empty database the catalog Up makes (tables, columns
// with their types, indexes, foreign keys and triggers), which Up then
// finds up to date. A schema change without the files regenerated fails
// here.
func TestSQLFiles(t *testing.T) {
	for _, d := range dbtest.All() {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join("sql", d.Name)
			byUp := d.Open(t)
			require.NoError(t, migrate.Up(t.Context(), byUp))
			want := dbtest.Catalog(t, byUp)

			t.Run("Schema", func(t *testing.T) {
				db := d.Open(t)
				execFile(t, db, filepath.Join(dir, "schema.sql"))
				assert.Equal(t, want, dbtest.Catalog(t, db), regenerate)
				upNoDDL(t, db)
			})

			if d.Name == "postgres" {
				// A database already past a file gets what was moved out
				// of it again: it must change nothing there.
				t.Run("SplitOutOnUp", func(t *testing.T) {
					db := d.Open(t)
					require.NoError(t, migrate.Up(t.Context(), db))
					for _, f := range movedFiles(t, dir) {
						execFile(t, db, f)
					}
					assert.Equal(t, want, dbtest.Catalog(t, db))
				})
				t.Run("OneStatementForCitus", func(t *testing.T) {
					files, err := filepath.Glob(filepath.Join(dir, "*.up.sql"))
					require.NoError(t, err)
					for _, f := range files {
						b, err := os.ReadFile(f)
						require.NoError(t, err)
						stmts := statements(string(b))
						for _, s := range stmts {
							if citusAlone.MatchString(s) {
								assert.Len(t, stmts, 1, "%s: %q must be alone in its file for Citus", f, s)
							}
						}
					}
				})
			}

			t.Run("Migrations", func(t *testing.T) {
				files, err := filepath.Glob(filepath.Join(dir, "*.up.sql"))
				require.NoError(t, err)
				require.NotEmpty(t, files, "the first version's schema, then each upgrade")
				slices.Sort(files)
				db := d.Open(t)
				for _, f := range files {
					execFile(t, db, f)
				}
				assert.Equal(t, want, dbtest.Catalog(t, db), regenerate)
				upNoDDL(t, db)
			})

			// A database supported from a later version on (MariaDB)
			// has no fixture of the first.
			fixture := filepath.Join("testdata", "upgrade", "v1", d.Name+".sql")
			if !fileExists(fixture) {
				return
			}
			t.Run("FirstIsTheFirstFixture", func(t *testing.T) {
				first, err := os.ReadFile(filepath.Join(dir, "000001_initial.up.sql"))
				require.NoError(t, err)
				fixture, err := os.ReadFile(fixture)
				require.NoError(t, err)
				if d.Name != "postgres" {
					assert.Equal(t, string(fixture), string(first), regenerate)
					return
				}
				// PostgreSQL's first file is the fixture's tables; its
				// indexes, and the foreign keys that need them, are in
				// files of their own after the last version's.
				assert.Equal(t, tablesOf(string(fixture)), tablesOf(string(first)), regenerate)
				moved := strings.Join(movedStatements(t, dir), "\n")
				for _, s := range statements(string(fixture)) {
					if strings.HasPrefix(s, "CREATE TABLE") {
						continue
					}
					assert.Contains(t, moved, s, "moved out of the first file")
				}
			})
		})
	}
}

// citusAlone matches the statements a Citus coordinator refuses in a query
// string of several: CREATE INDEX, and ADD CONSTRAINT in any form.
var citusAlone = regexp.MustCompile(`(?i)^\s*CREATE\s+(UNIQUE\s+)?INDEX\b|\bADD\s+CONSTRAINT\b`)

// statements returns the statements of a migrate/sql file, one a line,
// without comments.
func statements(file string) []string {
	var out []string
	for line := range strings.SplitSeq(file, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "--") {
			out = append(out, line)
		}
	}
	return out
}

var createTable = regexp.MustCompile(`(?m)^CREATE TABLE "(\w+)"`)

// tablesOf returns the tables file creates, in order.
func tablesOf(file string) []string {
	var out []string
	for _, m := range createTable.FindAllStringSubmatch(file, -1) {
		out = append(out, m[1])
	}
	return out
}

// movedFiles returns, in order, the files of dir that hold a statement
// moved out of an earlier file (internal/sqlsplit).
func movedFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.up.sql"))
	require.NoError(t, err)
	slices.Sort(files)
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		if strings.HasPrefix(string(b), "-- Moved out of ") {
			out = append(out, f)
		}
	}
	require.NotEmpty(t, out)
	return out
}

// movedStatements returns the statements of movedFiles.
func movedStatements(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, f := range movedFiles(t, dir) {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		out = append(out, statements(string(b))...)
	}
	return out
}
