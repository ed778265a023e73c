// Command pipeline simulates one feature run of the agent pipeline end to
// end, as a durable workflow engine would drive it, crashes it halfway,
// replays it, and prints what the database recorded.
//
// By default it uses an SQLite file in a temporary directory. Point it at
// another database with -dsn or DATABASE_URL:
//
//	go run ./examples/pipeline
//	go run ./examples/pipeline -dsn postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
//	go run ./examples/pipeline -dsn mysql://root@127.0.0.1:3306/test
//	go run ./examples/pipeline -keep   # leave the SQLite file for inspection
//	go run ./examples/pipeline -serve 127.0.0.1:8080   # then see the run in a browser
//
// With -serve, it then serves package runview's viewer over the same
// database, prints its URL and the run's, and stops at Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/internal/dialect/mariadb"
	"github.com/agentpipeline/persistence/repository"
	"github.com/agentpipeline/persistence/runview"
)

// connectTimeout bounds how long an unreachable server can make us wait.
var connectTimeout = 5 * time.Second

func main() {
	dsn := flag.String("dsn", os.Getenv("DATABASE_URL"), "database to use: a postgres:// or mysql:// (MariaDB) URL, or an SQLite file path (default: a new SQLite file in a temporary directory; also read from DATABASE_URL)")
	keep := flag.Bool("keep", false, "keep the temporary SQLite file and print its path")
	serve := flag.String("serve", "", "after the run, serve the run viewer (package runview) at this address, such as 127.0.0.1:8080, until interrupted")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runServe(ctx, *dsn, *keep, *serve, os.Stdout, nil); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", oneLine(err))
		os.Exit(1)
	}
}

// oneLine returns err's message on one line, whatever the driver said.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func run(ctx context.Context, dsn string, keep bool, out io.Writer) error {
	return runServe(ctx, dsn, keep, "", out, nil)
}

// runServe is run, then, when addr is set, serves the run viewer at addr
// until ctx ends; ready, if set, is given its URL once it listens.
func runServe(ctx context.Context, dsn string, keep bool, addr string, out io.Writer, ready func(url string)) error {
	if dsn == "" {
		dir, err := os.MkdirTemp("", "pipeline-")
		if err != nil {
			return err
		}
		path := filepath.Join(dir, "pipeline.db")
		if keep {
			defer fmt.Fprintf(out, "\nSQLite database kept at %s\n", path)
		} else {
			defer os.RemoveAll(dir)
		}
		dsn = path
	}
	db, err := open(ctx, dsn)
	if err != nil {
		return err
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	if err := simulate(ctx, db, out); err != nil {
		return err
	}
	if addr == "" {
		return nil
	}
	return serveViewer(ctx, db, addr, out, ready)
}

// serveViewer serves the run viewer over db at addr until ctx ends. A
// real application would mount it behind its own authentication, under
// a prefix: mux.Handle("/admin/runs/", requireAdmin(http.StripPrefix("/admin/runs", viewer))).
func serveViewer(ctx context.Context, db *gorm.DB, addr string, out io.Writer, ready func(url string)) error {
	repo := repository.New(db)
	runs, err := repo.ListFeatureRuns(ctx, repository.RunFilter{}, repository.Page{Limit: 1})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("serve the run viewer: %w", err)
	}
	base := "http://" + ln.Addr().String() + "/"
	fmt.Fprintf(out, "\nThe run viewer is at %s", base)
	if len(runs.Runs) > 0 {
		fmt.Fprintf(out, " (this run: %sruns/%s)", base, runs.Runs[0].ID)
	}
	fmt.Fprintln(out, "; Ctrl-C stops it.")
	srv := &http.Server{Handler: runview.New(repo, runview.Options{}), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	if ready != nil {
		ready(base)
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// open opens dsn: PostgreSQL for a postgres:// or postgresql:// URL or a
// key=value DSN naming a host, MariaDB for a mysql:// URL, SQLite
// otherwise. It gives up after connectTimeout.
func open(ctx context.Context, dsn string) (*gorm.DB, error) {
	cfg := &gorm.Config{Logger: logger.Discard, DisableAutomaticPing: true}
	var dialector gorm.Dialector
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		u, err := url.Parse(dsn)
		if err != nil {
			return nil, fmt.Errorf("bad DSN: %w", err)
		}
		q := u.Query()
		if !q.Has("connect_timeout") {
			q.Set("connect_timeout", fmt.Sprint(int(connectTimeout.Seconds())))
			u.RawQuery = q.Encode()
		}
		dialector = postgres.Open(u.String())
	case strings.Contains(dsn, "host="):
		if !strings.Contains(dsn, "connect_timeout=") {
			dsn += fmt.Sprintf(" connect_timeout=%d", int(connectTimeout.Seconds()))
		}
		dialector = postgres.Open(dsn)
	case strings.HasPrefix(dsn, "mysql://"):
		c, err := mariadb.Config(dsn)
		if err != nil {
			return nil, err
		}
		c.Timeout = connectTimeout
		// GORM would ask the server its version as it opens, without a
		// deadline, and wait forever on a server that never answers;
		// the ping below asks within connectTimeout instead.
		dialector = mysql.New(mysql.Config{DSN: c.FormatDSN(), SkipInitializeWithVersion: true, DefaultDatetimePrecision: &mariadb.DatetimePrecision})
	default:
		path := strings.TrimPrefix(dsn, "sqlite:")
		if _, err := os.Stat(filepath.Dir(path)); err != nil {
			return nil, fmt.Errorf("bad SQLite path %q: %w", path, err)
		}
		// Foreign keys make deletes cascade; WAL and a busy timeout let
		// concurrent writers queue instead of failing.
		dialector = sqlite.Open("file:" + path + "?_foreign_keys=on&_journal_mode=WAL&_busy_timeout=5000")
	}
	db, err := gorm.Open(dialector, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("database did not answer within %s", connectTimeout)
		}
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return db, nil
}
