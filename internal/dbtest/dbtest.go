// Package dbtest opens the databases the tests run against: a private
// in-memory SQLite and a fresh schema on a real PostgreSQL for each test,
// both recording the statements they run.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"maps"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/persistencetest"
)

// DefaultPostgresDSN is the server the tests use when TEST_POSTGRES_DSN is
// unset: the one this project's machines run.
const DefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Opener opens a fresh, empty database for one test and closes it when the
// test ends.
type Opener func(t testing.TB) *gorm.DB

// Database names an Opener.
type Database struct {
	Name string
	Open Opener
}

// All returns every database the contract runs on.
func All() []Database {
	return []Database{{"sqlite", SQLite}, {"postgres", Postgres}}
}

// SQLite opens a private in-memory SQLite database with foreign keys on. It
// has one connection, as every connection to ":memory:" is a database of
// its own; concurrent callers queue for it.
func SQLite(t testing.TB) *gorm.DB {
	t.Helper()
	sqlDB, err := sql.Open("sqlite3", "file::memory:?_foreign_keys=on")
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	sqlDB.SetMaxOpenConns(1)
	sqlDB.SetConnMaxLifetime(0)
	sqlDB.SetConnMaxIdleTime(0)
	return open(t, sqlite.Dialector{DriverName: "sqlite3"}, sqlDB)
}

var (
	adminOnce sync.Once
	adminDB   *sql.DB
	adminErr  error
)

// PostgresDSN returns the DSN of the test server.
func PostgresDSN() string {
	if dsn := os.Getenv("TEST_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return DefaultPostgresDSN
}

// Postgres creates a schema of its own on the test server and opens a pool
// whose connections use it. When no server answers, the test is skipped, or
// fails where the CI environment variable is set.
func Postgres(t testing.TB) *gorm.DB {
	t.Helper()
	return PostgresWithParams(t, nil)
}

// PostgresWithParams is Postgres with params added to the DSN of every
// connection of the pool, such as application_name, which lets a test find
// its own backends in pg_stat_activity (to terminate them) without touching
// those of tests running in parallel against the same server.
func PostgresWithParams(t testing.TB, params map[string]string) *gorm.DB {
	t.Helper()
	admin := postgresAdmin(t)
	schema := "test_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	params = maps.Clone(params)
	if params == nil {
		params = map[string]string{}
	}
	params["search_path"] = schema
	sqlDB, err := sql.Open("pgx", withParams(t, PostgresDSN(), params))
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	sqlDB.SetMaxOpenConns(40)
	return open(t, postgres.New(postgres.Config{}), sqlDB)
}

// PostgresServer returns a connection to the test server's default schema,
// for tests that inspect the server itself; the test is skipped or fails as
// in Postgres when there is none.
func PostgresServer(t testing.TB) *sql.DB {
	t.Helper()
	return postgresAdmin(t)
}

// PostgresDatabase creates an empty database of its own on the test server
// and returns its name. It is dropped when the test ends, with any session
// still connected to it. It is for tests whose connections cannot choose a
// schema, such as those through PgBouncer, which refuses search_path as a
// startup parameter. The test is skipped or fails as in Postgres when there
// is no server.
func PostgresDatabase(t testing.TB) string {
	t.Helper()
	admin := postgresAdmin(t)
	name := "test_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// template0, not the default template1: CREATE DATABASE refuses to copy
	// a template any other session is connected to, and template0 accepts
	// no connections.
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP DATABASE " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return name
}

func postgresAdmin(t testing.TB) *sql.DB {
	t.Helper()
	adminOnce.Do(func() {
		adminDB, adminErr = sql.Open("pgx", PostgresDSN())
		if adminErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		adminErr = adminDB.PingContext(ctx)
	})
	if adminErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL at TEST_POSTGRES_DSN (%s) is required when CI is set: %v", PostgresDSN(), adminErr)
		}
		t.Skipf("skipping: no PostgreSQL at TEST_POSTGRES_DSN (%s): %v", PostgresDSN(), adminErr)
	}
	return adminDB
}

// withParams returns dsn with params set in its query.
func withParams(t testing.TB, dsn string, params map[string]string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		t.Fatalf("TEST_POSTGRES_DSN must be a postgres:// URL: %q", dsn)
	}
	q := u.Query()
	for k, v := range params {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Concurrently calls fn from n goroutines released at once and returns
// their errors by goroutine: persistencetest.Concurrently, which users get
// too.
func Concurrently(n int, fn func(i int) error) []error { return persistencetest.Concurrently(n, fn) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var _ = stdlib.GetDefaultDriver // registers the "pgx" database/sql driver
