package persistencetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "github.com/mattn/go-sqlite3" // the driver of gorm.io/driver/sqlite
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/internal/dialect/mariadb"
	"github.com/agentpipeline/persistence/internal/dialect/mariadb/mariadbtest"
	"github.com/agentpipeline/persistence/migrate"
)

// Open returns a fresh in-memory SQLite database, with foreign keys on and
// the schema migrated, and closes it when tb's test ends.
//
// The database has a single connection, since every connection to an
// in-memory SQLite is a database of its own: concurrent calls queue for it.
// GORM logs nothing, as the failures a test provokes on purpose would
// otherwise flood its output.
func Open(tb testing.TB) *gorm.DB {
	tb.Helper()
	sqlDB, err := sql.Open("sqlite3", "file::memory:?_foreign_keys=on")
	if err != nil {
		tb.Fatalf("persistencetest: open SQLite: %v", err)
	}
	tb.Cleanup(func() { _ = sqlDB.Close() })
	sqlDB.SetMaxOpenConns(1)
	// The one connection must never be closed for being idle or old: the
	// database would go with it.
	sqlDB.SetConnMaxLifetime(0)
	sqlDB.SetConnMaxIdleTime(0)
	db, err := gorm.Open(sqlite.Dialector{DriverName: "sqlite3", Conn: sqlDB}, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		tb.Fatalf("persistencetest: open SQLite: %v", err)
	}
	if err := migrate.Up(tb.Context(), db); err != nil {
		tb.Fatalf("persistencetest: %v", err)
	}
	return db
}

// idleConns is how many idle connections the pools of OpenPostgres and
// OpenMariaDB keep: as many as RequireReplaySafe runs copies of a step at
// once. database/sql keeps 2 by default, so each burst of concurrent
// calls would open new connections, and each new PostgreSQL connection
// starts a server process, which costs the server tens of milliseconds
// of CPU on a small machine: more than a test's statements.
const idleConns = copies

// OpenPostgres returns a database on the PostgreSQL server at dsn (a
// postgres:// URL or a key=value DSN) in a schema of its own, created
// empty and migrated, which every connection of the returned pool uses. At
// the end of tb's test the schema is dropped, with everything in it, and
// the pool closed. tb fails if the server cannot be reached.
//
// The schema's name is random, so tests may run in parallel against one
// server, and leaves no trace there once they end. The pool keeps up to 8
// idle connections, as many as [RequireReplaySafe] runs copies of a step.
func OpenPostgres(tb testing.TB, dsn string) *gorm.DB {
	tb.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		tb.Fatalf("persistencetest: PostgreSQL DSN: %v", err)
	}
	schema := "persistencetest_" + randomHex(8)
	// The search path names the schema before it exists, so that every
	// connection, including the first, uses it.
	cfg.RuntimeParams["search_path"] = schema
	sqlDB := stdlib.OpenDB(*cfg)
	sqlDB.SetMaxIdleConns(idleConns)
	ctx, cancel := context.WithTimeout(tb.Context(), 30*time.Second)
	defer cancel()
	if _, err := sqlDB.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		_ = sqlDB.Close()
		tb.Fatalf("persistencetest: create a schema on PostgreSQL: %v", err)
	}
	tb.Cleanup(func() {
		// The test's context is done by now: give the drop its own.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := sqlDB.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("persistencetest: drop schema %s: %v", schema, err)
		}
		_ = sqlDB.Close()
	})
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		tb.Fatalf("persistencetest: open PostgreSQL: %v", err)
	}
	if err := migrate.Up(ctx, db); err != nil {
		tb.Fatalf("persistencetest: %v", err)
	}
	return db
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// OpenMariaDB returns a database of its own on the MariaDB server at dsn
// (a mysql:// URL, or a go-sql-driver/mysql DSN), created empty and
// migrated. At the end of tb's test the database is dropped and the pool
// closed. tb fails if the server cannot be reached.
//
// The connections parse times (parseTime=true), which the package needs,
// whatever dsn says, and GORM keeps timestamps to the microsecond
// (DefaultDatetimePrecision 6, where gorm.io/driver/mysql rounds them to
// the millisecond by default). The database's name is random, so tests may run in
// parallel against one server. The pool keeps up to 8 idle connections,
// as many as [RequireReplaySafe] runs copies of a step.
func OpenMariaDB(tb testing.TB, dsn string) *gorm.DB {
	tb.Helper()
	cfg, err := mariadb.Config(dsn)
	if err != nil {
		tb.Fatalf("persistencetest: %v", err)
	}
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		tb.Fatalf("persistencetest: open MariaDB: %v", err)
	}
	tb.Cleanup(func() { _ = admin.Close() })
	cfg.DBName = mariadbtest.Database(tb, admin)
	sqlDB, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		tb.Fatalf("persistencetest: open MariaDB: %v", err)
	}
	sqlDB.SetMaxIdleConns(idleConns)
	tb.Cleanup(func() { _ = sqlDB.Close() })
	db, err := gorm.Open(mysql.New(mysql.Config{Conn: sqlDB, DefaultDatetimePrecision: &mariadb.DatetimePrecision}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		tb.Fatalf("persistencetest: open MariaDB: %v", err)
	}
	if err := migrate.Up(tb.Context(), db); err != nil {
		tb.Fatalf("persistencetest: %v", err)
	}
	return db
}
