// Package dialecttest is how tests get a database of each kind the
// package supports. Each database's test opener lives beside its
// dialect, in a test-only package (sqlite/sqlitetest and so on), so
// that no program that imports the package links "testing" or a
// database driver it does not use.
package dialecttest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dialect"
)

// Test opens databases of one kind for tests.
type Test struct {
	// Dialect is the database's, as package dialects registers it.
	Dialect *dialect.Dialect
	// EnvVar names the environment variable that holds the test server's
	// DSN, and DefaultDSN is the DSN used when it is unset; both empty
	// for an embedded database.
	EnvVar, DefaultDSN string
	// Fresh creates an empty database of its own on the server at dsn
	// for tb's test, and returns a pool of connections to it. The
	// database is dropped, and the pool closed, when the test ends. When
	// no server answers, tb skips, or fails where the CI environment
	// variable is set.
	Fresh func(tb testing.TB, dsn string) *sql.DB
	// Migrated, where set, is Fresh for a test that wants its database
	// migrated: the database it returns is one in which migrate ran,
	// which may be one that another test of the process was done with,
	// emptied (see postgrestest.Migrated). nil where a fresh database is
	// as cheap.
	Migrated func(tb testing.TB, dsn string, migrate func(db *sql.DB, schema string) error) (*sql.DB, string)
	// Server returns a pool of connections to the server at dsn, shared
	// by the tests of the process, and skips or fails tb as Fresh does
	// when no server answers; nil for an embedded database.
	Server func(tb testing.TB, dsn string) *sql.DB
	// Dialector returns GORM's dialector of the database over conn.
	Dialector func(conn gorm.ConnPool) gorm.Dialector
	// Catalog describes the schema of db as lines, one per object, for
	// comparing two schemas; names are unqualified.
	Catalog func(tb testing.TB, db *gorm.DB) []string
}

// DSN returns the DSN of the test server: the environment variable its
// tests read, or the server this project's machines run.
func (t *Test) DSN() string {
	if v := os.Getenv(t.EnvVar); t.EnvVar != "" && v != "" {
		return v
	}
	return t.DefaultDSN
}

// Name returns a random name for a test's own database or schema, so
// that tests may run in parallel against one server.
func Name() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "test_" + hex.EncodeToString(b)
}

var (
	adminMu sync.Mutex
	admins  = map[string]*sql.DB{}
	// down holds why each server that did not answer did not, so that
	// the tests after the first skip at once rather than each waiting for
	// the server again.
	down = map[string]error{}
)

// Admin returns a pool of connections to the server of kind at dsn,
// opened with driver and driverDSN (dsn as the driver reads it), shared
// by the tests of the process. When the server does not answer, tb skips
// or fails as Unreachable says.
func Admin(tb testing.TB, kind, dsn, driver, driverDSN string) *sql.DB {
	tb.Helper()
	adminMu.Lock()
	defer adminMu.Unlock()
	if db, ok := admins[dsn]; ok {
		return db
	}
	err, ok := down[dsn]
	if !ok {
		var db *sql.DB
		db, err = sql.Open(driver, driverDSN)
		if err == nil {
			// Tests side by side create and drop their databases at
			// once: keep the connections for the next rather than
			// start a server process for each (see postgrestest).
			db.SetMaxIdleConns(16)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err = db.PingContext(ctx); err == nil {
				admins[dsn] = db
				return db
			}
			_ = db.Close()
		}
		down[dsn] = err
	}
	Unreachable(tb, kind, dsn, err)
	return nil
}

// reported holds the servers already reported absent in this test binary.
var reported sync.Map

// Unreachable fails or skips tb, whose test needs the server of kind at
// dsn, which did not answer. Where the CI environment variable is set it
// fails: CI must run every database. Otherwise it skips, and only the
// first test of the test binary (so of the package) to skip for that
// server says why: hundreds of tests repeating one line would bury it.
func Unreachable(tb testing.TB, kind, dsn string, err error) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf("%s at %s is required when CI is set: %v", kind, dsn, err)
	}
	if _, told := reported.LoadOrStore(kind+" "+dsn, true); told {
		tb.SkipNow()
	}
	tb.Skipf("skipping every test of this package that needs %s: none at %s: %v", kind, dsn, err)
}
