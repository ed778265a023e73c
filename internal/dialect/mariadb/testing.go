package mariadb

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	gormmysql "gorm.io/driver/mysql"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dialect"
)

// Config parses dsn, a mysql:// URL (mysql://user:password@host:port/db?
// params) or a go-sql-driver/mysql DSN (user:password@tcp(host:port)/db?
// params), into go-sql-driver/mysql's configuration, with parseTime on,
// which the package needs.
func Config(dsn string) (*mysql.Config, error) {
	if rest, ok := strings.CutPrefix(dsn, "mysql://"); ok {
		u, err := url.Parse("mysql://" + rest)
		if err != nil {
			return nil, fmt.Errorf("MariaDB URL: %w", err)
		}
		cfg := mysql.NewConfig()
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
		cfg.Net, cfg.Addr = "tcp", u.Host
		if u.Port() == "" {
			cfg.Addr = u.Hostname() + ":3306"
		}
		cfg.DBName = strings.TrimPrefix(u.Path, "/")
		// The query's parameters are the DSN's: let the driver read them.
		parsed, err := mysql.ParseDSN(cfg.FormatDSN() + "?" + u.RawQuery)
		if err != nil {
			return nil, fmt.Errorf("MariaDB URL: %w", err)
		}
		cfg = parsed
		cfg.ParseTime = true
		return cfg, nil
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("MariaDB DSN: %w", err)
	}
	cfg.ParseTime = true
	return cfg, nil
}

var (
	adminMu sync.Mutex
	admins  = map[string]*sql.DB{}
)

// Admin returns a pool of connections to the server at dsn, shared by the
// tests of the process, for tests that inspect the server itself. When no
// server answers, tb skips, or fails where the CI environment variable is
// set.
func Admin(tb testing.TB, dsn string) *sql.DB {
	tb.Helper()
	cfg, err := Config(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	adminMu.Lock()
	defer adminMu.Unlock()
	if db, ok := admins[dsn]; ok {
		return db
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = db.PingContext(ctx)
	}
	if err != nil {
		dialect.Unreachable(tb, "MariaDB", dsn, err)
	}
	admins[dsn] = db
	return db
}

// Database creates an empty database of its own through the connections
// admin, and returns its name. It is dropped when the test ends. It takes
// the server's default character set and collation, which the schema's
// tables override.
func Database(tb testing.TB, admin *sql.DB) string {
	tb.Helper()
	name := dialect.TestName()
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
// pool of connections to it; see dialect.Test.Fresh.
func Fresh(tb testing.TB, dsn string) *sql.DB {
	tb.Helper()
	cfg, err := Config(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.DBName = Database(tb, Admin(tb, dsn))
	sqlDB, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		tb.Fatalf("open MariaDB: %v", err)
	}
	sqlDB.SetMaxOpenConns(40)
	// Cleanups run last first: the pool closes before its database goes.
	tb.Cleanup(func() { _ = sqlDB.Close() })
	return sqlDB
}

// DatetimePrecision is the precision GORM's dialector should be given:
// gorm.io/driver/mysql rounds GORM's NowFunc, and so every timestamp the
// repository writes, to its DefaultDatetimePrecision, milliseconds unless
// told otherwise, where the schema keeps microseconds.
var DatetimePrecision = 6

func dialector(conn gorm.ConnPool) gorm.Dialector {
	return gormmysql.New(gormmysql.Config{Conn: conn, DefaultDatetimePrecision: &DatetimePrecision})
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
