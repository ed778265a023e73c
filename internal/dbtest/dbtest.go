// Package dbtest opens the databases the tests run against: a private
// in-memory SQLite, a fresh schema on a real PostgreSQL and a fresh
// database on a real MariaDB for each test, all recording the statements
// they run.
package dbtest

import (
	"database/sql"
	"sync"
	"testing"

	"github.com/go-sql-driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/internal/dialect"
	"github.com/agentpipeline/persistence/internal/dialect/dialecttest"
	"github.com/agentpipeline/persistence/internal/dialect/mariadb"
	"github.com/agentpipeline/persistence/internal/dialect/mariadb/mariadbtest"
	"github.com/agentpipeline/persistence/internal/dialect/postgres/postgrestest"
	"github.com/agentpipeline/persistence/internal/dialect/sqlite/sqlitetest"
	"github.com/agentpipeline/persistence/internal/dialects"
	"github.com/agentpipeline/persistence/migrate"

	"github.com/agentpipeline/persistence/persistencetest"
)

// Opener opens a fresh, empty database for one test and closes it when the
// test ends; through Migrated, an Opener may give a migrated one instead.
type Opener func(t testing.TB) *gorm.DB

// Database names an Opener.
type Database struct {
	Name string
	Open Opener
	// Dialect is the database's.
	Dialect *dialect.Dialect
}

// Reach skips or fails t, as Open would, when the database is on a test
// server (as All's are) that does not answer, so that a test running many subtests on
// it skips once rather than once per subtest. It does nothing for an
// embedded database.
func (d Database) Reach(t testing.TB) {
	t.Helper()
	if test := TestOf(d.Dialect); test.Server != nil {
		test.Server(t, test.DSN())
	}
}

// Tests lists the test openers of the supported databases, in the order
// of dialects.All, which lists the databases themselves: supporting
// another database adds its test package here too (TestEveryDialectHasTest
// fails until it does).
var Tests = []*dialecttest.Test{
	&sqlitetest.Test,
	&postgrestest.Test,
	&mariadbtest.Test,
}

// TestOf returns the test opener of d, one of dialects.All.
func TestOf(d *dialect.Dialect) *dialecttest.Test {
	for _, t := range Tests {
		if t.Dialect == d {
			return t
		}
	}
	panic("dbtest: no test opener for database " + d.Name + ": add it to dbtest.Tests")
}

// All returns every database the contract runs on: each supported
// database, a fresh one of its own for each test.
func All() []Database {
	all := make([]Database, len(dialects.All))
	for i, d := range dialects.All {
		test := TestOf(d)
		all[i] = Database{Name: d.Name, Dialect: d, Open: func(t testing.TB) *gorm.DB {
			t.Helper()
			if _, ok := migratedFor.Load(t); ok && test.Migrated != nil {
				sqlDB, _ := test.Migrated(t, test.DSN(), func(sqlDB *sql.DB, _ string) error { return migrateUp(t, d, sqlDB, "") })
				return open(t, d, sqlDB)
			}
			return open(t, d, test.Fresh(t, test.DSN()))
		}}
	}
	return all
}

// migratedFor holds the tests that asked Migrated for their database.
var migratedFor sync.Map

// Migrated returns the database open opens for t, which t migrates (with
// migrate.Up, as the contract suite does). Where open is one of All's, on
// a database whose test opener has a Migrated (PostgreSQL), or Citus, the
// database is one that opener returns: already migrated, perhaps one
// another test was done with and left as migrated, emptied. Migrating it
// again then changes nothing. Other openers open as they always do.
func Migrated(t testing.TB, open Opener) *gorm.DB {
	t.Helper()
	migratedFor.Store(t, true)
	defer migratedFor.Delete(t)
	return open(t)
}

// migrateUp runs migrate.Up on sqlDB, a pool of d's, in schema unless it
// is "".
func migrateUp(t testing.TB, d *dialect.Dialect, sqlDB *sql.DB, schema string) error {
	db, err := gorm.Open(TestOf(d).Dialector(sqlDB), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return err
	}
	if schema != "" {
		return migrate.Up(t.Context(), db, migrate.InSchema(schema))
	}
	return migrate.Up(t.Context(), db)
}

// DSN returns the DSN of d's test server: the environment variable its
// tests read, or the server this project's machines run.
func DSN(d *dialect.Dialect) string { return TestOf(d).DSN() }

// SQLite opens a private in-memory SQLite database with foreign keys on. It
// has one connection, as every connection to ":memory:" is a database of
// its own; concurrent callers queue for it.
func SQLite(t testing.TB) *gorm.DB {
	t.Helper()
	return open(t, sqlitetest.Test.Dialect, sqlitetest.Fresh(t, ""))
}

// PostgresDSN returns the DSN of the PostgreSQL test server.
func PostgresDSN() string { return postgrestest.Test.DSN() }

// Postgres creates a schema of its own on the test server and opens a pool
// whose connections use it. When no server answers, the test is skipped, or
// fails where the CI environment variable is set.
func Postgres(t testing.TB) *gorm.DB {
	t.Helper()
	return PostgresWithParams(t, nil)
}

// PostgresWithParams is Postgres with params added to the DSN of every
// connection of the pool; see postgrestest.FreshWithParams.
func PostgresWithParams(t testing.TB, params map[string]string) *gorm.DB {
	t.Helper()
	return open(t, postgrestest.Test.Dialect, postgrestest.FreshWithParams(t, PostgresDSN(), params))
}

// PostgresServer returns a connection to the test server's default schema,
// for tests that inspect the server itself; the test is skipped or fails as
// in Postgres when there is none.
func PostgresServer(t testing.TB) *sql.DB {
	t.Helper()
	return postgrestest.Admin(t, PostgresDSN())
}

// PostgresDatabase creates an empty database of its own on the test server
// and returns its name; see postgrestest.Database.
func PostgresDatabase(t testing.TB) string {
	t.Helper()
	return postgrestest.Database(t, PostgresDSN())
}

// MariaDBDSN returns the DSN of the MariaDB test server.
func MariaDBDSN() string { return mariadbtest.Test.DSN() }

// MariaDBServer returns a connection to the MariaDB test server, for tests
// that inspect the server itself; the test is skipped or fails as in
// MariaDB when there is none.
func MariaDBServer(t testing.TB) *sql.DB {
	t.Helper()
	return mariadbtest.Admin(t, MariaDBDSN())
}

// MariaDB creates a database of its own on the MariaDB test server and
// opens a pool of connections to it. When no server answers, the test is
// skipped, or fails where the CI environment variable is set.
func MariaDB(t testing.TB) *gorm.DB {
	t.Helper()
	return open(t, &mariadb.Dialect, mariadbtest.Fresh(t, MariaDBDSN()))
}

// MariaDBWith is MariaDB with the driver's configuration changed by set,
// such as ClientFoundRows.
func MariaDBWith(t testing.TB, set func(*mysql.Config)) *gorm.DB {
	t.Helper()
	cfg, err := mariadb.Config(MariaDBDSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.DBName = mariadbtest.Database(t, MariaDBServer(t))
	set(cfg)
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sqlDB := sql.OpenDB(connector)
	t.Cleanup(func() { _ = sqlDB.Close() })
	return open(t, &mariadb.Dialect, sqlDB)
}

// Concurrently calls fn from n goroutines released at once and returns
// their errors by goroutine: persistencetest.Concurrently, which users get
// too.
func Concurrently(n int, fn func(i int) error) []error { return persistencetest.Concurrently(n, fn) }
