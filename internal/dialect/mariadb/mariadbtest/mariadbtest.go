// Package mariadbtest opens MariaDB databases for tests: a database of
// its own on the test server for each test.
package mariadbtest

import (
	"context"
	"database/sql"
	"testing"
	"time"

	gormmysql "gorm.io/driver/mysql"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dialect/dialecttest"
	"github.com/agentpipeline/persistence/internal/dialect/mariadb"
)

// Test is how tests get a MariaDB database.
var Test = dialecttest.Test{
	Dialect:    &mariadb.Dialect,
	EnvVar:     "TEST_MARIADB_DSN",
	DefaultDSN: "root@tcp(127.0.0.1:3306)/test",
	Fresh:      Fresh,
	Server:     Admin,
	Dialector:  dialector,
	Catalog:    catalog,
}

// Admin returns a pool of connections to the server at dsn, shared by the
// tests of the process, for tests that inspect the server itself. When no
// server answers, tb skips, or fails where the CI environment variable is
// set.
func Admin(tb testing.TB, dsn string) *sql.DB {
	tb.Helper()
	cfg, err := mariadb.Config(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	return dialecttest.Admin(tb, "MariaDB", dsn, "mysql", cfg.FormatDSN())
}

// Database creates an empty database of its own through the connections
// admin, and returns its name. It is dropped when the test ends. It takes
// the server's default character set and collation, which the schema's
// tables override.
func Database(tb testing.TB, admin *sql.DB) string {
	tb.Helper()
	name := dialecttest.Name()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() {
		if _, err := admin.Exec("DROP DATABASE " + name); err != nil {
			tb.Errorf("drop database %s: %v", name, err)
		}
	})
	return name
}

// Fresh creates a database of its own on the server at dsn and returns a
// pool of connections to it; see dialecttest.Test.Fresh.
func Fresh(tb testing.TB, dsn string) *sql.DB {
	tb.Helper()
	cfg, err := mariadb.Config(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.DBName = Database(tb, Admin(tb, dsn))
	sqlDB, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		tb.Fatalf("open MariaDB: %v", err)
	}
	// Keep a burst's connections for the next, as postgrestest does.
	sqlDB.SetMaxOpenConns(40)
	sqlDB.SetMaxIdleConns(40)
	// Cleanups run last first: the pool closes before its database goes.
	tb.Cleanup(func() { _ = sqlDB.Close() })
	return sqlDB
}

func dialector(conn gorm.ConnPool) gorm.Dialector {
	return gormmysql.New(gormmysql.Config{Conn: conn, DefaultDatetimePrecision: &mariadb.DatetimePrecision})
}

func catalog(tb testing.TB, db *gorm.DB) []string {
	tb.Helper()
	var lines []string
	for _, q := range []string{
		`SELECT CONCAT('table ', table_name, ' ', table_type, ' ', engine, ' ', table_collation) FROM information_schema.tables WHERE table_schema = DATABASE()`,
		`SELECT CONCAT('column ', table_name, '.', column_name, ' #', ordinal_position, ' ', column_type, ' ', COALESCE(collation_name, ''),
			' nullable=', is_nullable, ' default=', COALESCE(column_default, 'none'))
		FROM information_schema.columns WHERE table_schema = DATABASE()`,
		`SELECT CONCAT('index ', table_name, ' ', index_name, ' unique=', 1 - non_unique, ' (', GROUP_CONCAT(column_name ORDER BY seq_in_index), ')')
		FROM information_schema.statistics WHERE table_schema = DATABASE() GROUP BY table_name, index_name, non_unique`,
		`SELECT CONCAT('foreign key ', k.table_name, ' ', k.constraint_name, ' (', GROUP_CONCAT(k.column_name ORDER BY k.ordinal_position), ') -> ',
			k.referenced_table_name, ' (', GROUP_CONCAT(k.referenced_column_name ORDER BY k.ordinal_position), ') on delete ', r.delete_rule)
		FROM information_schema.key_column_usage AS k
		JOIN information_schema.referential_constraints AS r ON r.constraint_schema = k.table_schema AND r.constraint_name = k.constraint_name
		WHERE k.table_schema = DATABASE() GROUP BY k.table_name, k.constraint_name, k.referenced_table_name, r.delete_rule`,
		`SELECT CONCAT('check ', table_name, ' ', constraint_name, ' ', check_clause) FROM information_schema.check_constraints WHERE constraint_schema = DATABASE()`,
		`SELECT CONCAT('trigger ', event_object_table, ' ', trigger_name) FROM information_schema.triggers WHERE trigger_schema = DATABASE()`,
	} {
		var rows []string
		if err := db.Raw(q).Scan(&rows).Error; err != nil {
			tb.Fatalf("read the catalog: %v", err)
		}
		lines = append(lines, rows...)
	}
	return lines
}
