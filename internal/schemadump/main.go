// Command schemadump prints the DDL that migrate.Up sends, as SQL a
// migration tool can run: on an empty database (the whole schema), or on a
// database whose schema an earlier version made (the upgrade from it).
//
// It runs migrate.Up for real, on a private in-memory SQLite or a fresh
// schema of a PostgreSQL server, and keeps the CREATE, ALTER and DROP
// statements GORM sends, in order. So the output is the schema exactly as
// the version of the package it is built with makes it, never written by
// hand. scripts/schema-sql.sh runs it against the package's earlier
// versions (to make the upgrade tests' fixtures) and this one (to make
// migrate/sql); it is kept to the API every version has, migrate.Up, so that
// it builds against each of them.
//
//	go run ./internal/schemadump -db sqlite
//	go run ./internal/schemadump -db postgres -from migrate/testdata/upgrade/v1/postgres.sql
//
// PostgreSQL is found at TEST_POSTGRES_DSN, or the tests' default server.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	_ "github.com/mattn/go-sqlite3"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/migrate"
)

const defaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

func main() {
	db := flag.String("db", "", "database: postgres or sqlite")
	from := flag.String("from", "", "a file of DDL to run first: the schema of the version to upgrade from")
	header := flag.String("header", "", "a comment to print first")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *db, *from, *header); err != nil {
		fmt.Fprintln(os.Stderr, "schemadump:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, name, from, header string) error {
	var before string
	if from != "" {
		b, err := os.ReadFile(from)
		if err != nil {
			return err
		}
		before = string(b)
	}
	rec := &recorder{}
	var (
		db  *gorm.DB
		err error
	)
	switch name {
	case "sqlite":
		db, err = openSQLite(rec)
	case "postgres":
		var drop func() error
		db, drop, err = openPostgres(ctx, rec)
		if err == nil {
			defer func() {
				if err := drop(); err != nil {
					fmt.Fprintln(os.Stderr, "schemadump: drop the scratch schema:", err)
				}
			}()
		}
	default:
		return fmt.Errorf("-db must be postgres or sqlite, not %q (MariaDB's files are written by hand: they are what Up sends)", name)
	}
	if err != nil {
		return err
	}
	if before != "" {
		if err := db.WithContext(ctx).Exec(before).Error; err != nil {
			return fmt.Errorf("run %s: %w", from, err)
		}
	}
	rec.start()
	if err := migrate.Up(ctx, db); err != nil {
		return err
	}
	ddl := rec.stop()
	if header != "" {
		for line := range strings.SplitSeq(strings.TrimSpace(header), "\n") {
			fmt.Fprintln(out, "-- "+line)
		}
	}
	// goose reads this annotation; golang-migrate and psql take it for the
	// comment it is.
	fmt.Fprintln(out, "-- +goose Up")
	for _, s := range ddl {
		if trigger.MatchString(s) {
			// A trigger's body holds semicolons, where goose would split
			// the file unless told not to.
			fmt.Fprintf(out, "-- +goose StatementBegin\n%s;\n-- +goose StatementEnd\n", s)
			continue
		}
		fmt.Fprintf(out, "%s;\n", s)
	}
	return nil
}

var (
	ddl     = regexp.MustCompile(`(?is)^\s*(CREATE|ALTER|DROP)\b`)
	trigger = regexp.MustCompile(`(?is)^\s*CREATE\s+TRIGGER\b`)
)

func openSQLite(rec *recorder) (*gorm.DB, error) {
	sqlDB, err := sql.Open("sqlite3", "file::memory:?_foreign_keys=on")
	if err != nil {
		return nil, err
	}
	sqlDB.SetMaxOpenConns(1) // each connection to :memory: is a database of its own
	return gorm.Open(sqlite.Dialector{DriverName: "sqlite3", Conn: sqlDB}, &gorm.Config{Logger: rec})
}

func openPostgres(ctx context.Context, rec *recorder) (*gorm.DB, func() error, error) {
	dsn := os.Getenv("TEST_POSTGRES_DSN")
	if dsn == "" {
		dsn = defaultPostgresDSN
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, nil, err
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	schema := "schemadump_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		return nil, nil, fmt.Errorf("create a scratch schema: %w", err)
	}
	drop := func() error {
		_, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		return errors.Join(err, admin.Close())
	}
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return nil, nil, errors.Join(fmt.Errorf("TEST_POSTGRES_DSN must be a postgres:// URL: %q", dsn), drop())
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	sqlDB, err := sql.Open("pgx", u.String())
	if err != nil {
		return nil, nil, errors.Join(err, drop())
	}
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: rec})
	if err != nil {
		return nil, nil, errors.Join(err, drop())
	}
	return db, func() error { return errors.Join(sqlDB.Close(), drop()) }, nil
}

// recorder is a GORM logger that keeps, while started, the DDL statements
// GORM runs.
type recorder struct {
	mu    sync.Mutex
	on    bool
	stmts []string
}

func (r *recorder) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on, r.stmts = true, nil
}

func (r *recorder) stop() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on = false
	return r.stmts
}

func (r *recorder) LogMode(logger.LogLevel) logger.Interface { return r }
func (r *recorder) Info(context.Context, string, ...any)     {}
func (r *recorder) Warn(context.Context, string, ...any)     {}
func (r *recorder) Error(context.Context, string, ...any)    {}

// Trace is called after each statement, with its SQL; a failed statement
// fails Up, so only statements that ran are kept.
func (r *recorder) Trace(_ context.Context, _ time.Time, fc func() (string, int64), err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sql, _ := fc(); r.on && err == nil && ddl.MatchString(sql) {
		r.stmts = append(r.stmts, strings.TrimSpace(sql))
	}
}
