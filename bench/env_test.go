package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	gormpostgres "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/workload"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// poolSize is the connection limit of every pool: as many connections as the
// concurrent workload has workers, so no side queues for a connection
// and database/sql never closes an idle one it will need again.
const poolSize = 8

// synchronousCommit is the synchronous_commit of the benchmark database:
// BENCH_SYNCHRONOUS_COMMIT, or off. With off a commit does not wait for its
// WAL to reach the disk. That wait is the same for every side, and on a
// shared disk it is long and erratic enough to bury the client-side cost
// the benchmarks compare; set BENCH_SYNCHRONOUS_COMMIT=on to include it.
func synchronousCommit() string {
	if v := os.Getenv("BENCH_SYNCHRONOUS_COMMIT"); v != "" {
		return v
	}
	return "off"
}

// env is the database every benchmark of one process runs against, with the
// three stores under comparison writing to the same tables.
type env struct {
	admin  *sql.DB
	dbName string

	sqlDB *sql.DB
	repo  *repository.Repository
	pool  *pgxpool.Pool
	// seed seeds and analyzes, on connections neither timed side uses
	// (see backend.ids).
	seed     *pgxpool.Pool
	base     *baseline
	naiveSQL *sql.DB
	naive    *naiveStore

	// repoIO, pgxIO and naiveIO count the bytes each side's connections
	// carry.
	repoIO, pgxIO, naiveIO ioCounter
}

// store returns the side of the comparison that impl names.
func (e *env) store(impl string) (workload.Store, *ioCounter) {
	switch impl {
	case implRepository:
		return e.repo, &e.repoIO
	case implFenced:
		return e.repo.AtStep(fenceStep), &e.repoIO
	case implNaive:
		return e.naive, &e.naiveIO
	}
	return e.base, &e.pgxIO
}

// The values of the impl key in benchmark names, so that benchstat can put
// the sides of each operation next to each other.
const (
	implRepository = "repository"
	implPGX        = "pgx"
	implNaive      = "naive"
	implMySQL      = "mysql"
	// implFenced is the repository through Repository.AtStep, on the
	// writes it fences (see writeCase.fenced).
	implFenced = "fenced"
)

// fenceStep is the step at which the side impl=fenced makes its writes.
// Seeded rows have none (NULL, which counts as 0), so its happy path
// moves them.
const fenceStep = 2

var impls = []string{implRepository, implPGX, implNaive}

// order returns impls in the order their sides run: as given, or
// reversed when BENCH_REVERSE is set (see the package doc).
func order(impls []string) []string {
	if os.Getenv("BENCH_REVERSE") == "" {
		return impls
	}
	reversed := slices.Clone(impls)
	slices.Reverse(reversed)
	return reversed
}

// backend is a database's benchmark environment, as the benchmarks and
// the tests that keep them fair use it.
type backend interface {
	// store returns the side of the comparison that impl names, and the
	// counter of its connections' bytes.
	store(impl string) (workload.Store, *ioCounter)
	// seedStatements are the seeder's statements on the database.
	seedStatements() *seedStatements
	// ids runs a seeding statement and returns the IDs it inserted. It
	// runs on connections of its own, as analyze does, which neither timed
	// side uses: until it did, it seeded through the baseline's pool, and
	// calls on the PostgreSQL connection that had seeded and analyzed took
	// 0.84x to 0.88x the time of the same calls on an identical pool of
	// pgx's, alternated in one loop (UpdateSandboxStatus, 3,000 calls a
	// side, 4 runs), and seeding through the other pool gave that pool's
	// calls 0.80x to 0.85x; two pools that had not seeded measured 0.93x
	// to 1.10x. The baseline had that head start over the repository.
	ids(ctx context.Context, query string, args ...any) ([]string, error)
	// analyze updates the planner's statistics of the tables after
	// seeding, as a production server's autovacuum or InnoDB would.
	analyze(ctx context.Context) error
	// reader reads back what the sides wrote.
	reader() *sql.DB
}

// database is a database the write and workload benchmarks run on.
type database struct {
	name string
	// key is what the names of its benchmarks add: nothing on PostgreSQL,
	// whose names predate the others' and so still compare with earlier
	// results, and the db key on the others.
	key string
	// impls are the sides compared on it; baseline is the one the
	// repository is compared with.
	impls    []string
	baseline string
	// setup returns the database's benchmark environment, made on first
	// use; without a server it skips tb, or fails it when CI is set.
	setup func(tb testing.TB) backend
}

var databases = []database{
	{name: "postgres", impls: impls, baseline: implPGX, setup: func(tb testing.TB) backend { return setup(tb) }},
	{name: "mariadb", key: "/db=mariadb", impls: []string{implRepository, implMySQL}, baseline: implMySQL, setup: func(tb testing.TB) backend { return setupMariaDB(tb) }},
}

func (e *env) seedStatements() *seedStatements { return &postgresSeeds }

func (e *env) ids(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, _ := e.seed.Query(ctx, query, args...)
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func (e *env) reader() *sql.DB { return e.sqlDB }

// analyze runs ANALYZE on the benchmark database. Servers for tests, such
// as the one the benchmarks were written on, may run without autovacuum,
// and then tables are never analyzed: without statistics the planner may
// choose, for a guarded UPDATE … WHERE status = 'running' AND id = $n, the
// index on (status, created_at, id), which reads the entry of every
// running row, rather than the primary key. A connection that prepared the
// statement on a small table keeps that choice as its generic plan while
// the table grows; here the repository's connection did, the baseline's
// did not, and the repository's FailFeatureRun took 1.7 times the
// baseline's, growing with each sample. ANALYZE gives both the plan a
// production server's statistics give (the primary key), and drops the
// plans cached before.
func (e *env) analyze(ctx context.Context) error {
	_, err := e.seed.Exec(ctx, "ANALYZE")
	return err
}

// discardLogger is the logger of both GORM sides. It keeps GORM's default
// level and slow-statement threshold, but discards what it writes: go test
// prints the test's stderr on stdout too, where a warning would split a
// result line.
var discardLogger = logger.New(log.New(io.Discard, "", 0), logger.Config{
	SlowThreshold: 200 * time.Millisecond,
	LogLevel:      logger.Warn,
})

var shared struct {
	once sync.Once
	env  *env
	err  error
}

// setup returns the process's benchmark database, creating and migrating it
// on first use. Without a PostgreSQL server it skips b, or fails it when CI
// is set (dbtest decides).
func setup(b testing.TB) *env {
	b.Helper()
	admin := dbtest.PostgresServer(b)
	shared.once.Do(func() { shared.env, shared.err = newEnv(admin) })
	if shared.err != nil {
		b.Fatalf("benchmark database: %v", shared.err)
	}
	return shared.env
}

// TestMain drops the benchmark databases once every benchmark has run.
// Plain `go test -short` creates none, so then it does nothing.
func TestMain(m *testing.M) {
	code := m.Run()
	var errs []error
	if shared.env != nil {
		errs = append(errs, shared.env.close())
	}
	if sharedMariaDB.env != nil {
		errs = append(errs, sharedMariaDB.env.close())
	}
	if sharedTenants.env != nil {
		errs = append(errs, sharedTenants.env.close())
	}
	if err := errors.Join(errs...); err != nil {
		log.Printf("bench: %v", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func newEnv(admin *sql.DB) (*env, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := &env{admin: admin, dbName: "persistence_bench_" + randomHex(6)}
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+e.dbName); err != nil {
		return nil, fmt.Errorf("create database: %w", err)
	}
	// The database's own setting reaches every connection of every pool,
	// and only those.
	if _, err := admin.ExecContext(ctx, "ALTER DATABASE "+e.dbName+" SET synchronous_commit = '"+strings.ReplaceAll(synchronousCommit(), "'", "''")+"'"); err != nil {
		return nil, errors.Join(fmt.Errorf("set synchronous_commit: %w", err), e.close())
	}
	if err := e.open(ctx); err != nil {
		return nil, errors.Join(err, e.close())
	}
	return e, nil
}

func (e *env) open(ctx context.Context) error {
	cfg, err := pgxpool.ParseConfig(dbtest.PostgresDSN())
	if err != nil {
		return fmt.Errorf("parse TEST_POSTGRES_DSN: %w", err)
	}
	cfg.ConnConfig.Database = e.dbName
	cfg.MaxConns = poolSize

	// The seeder's pool, which neither timed side uses (see backend.ids).
	if e.seed, err = pgxpool.NewWithConfig(ctx, cfg.Copy()); err != nil {
		return fmt.Errorf("open the seeding pool: %w", err)
	}

	// The repository's side: GORM with its default configuration over
	// database/sql and pgx's stdlib driver, as a caller would open it, with
	// its logger's output discarded.
	repoConn := *cfg.ConnConfig.Copy()
	repoConn.DialFunc = e.repoIO.dial(cfg.ConnConfig.DialFunc)
	e.sqlDB = stdlib.OpenDB(repoConn)
	e.sqlDB.SetMaxOpenConns(poolSize)
	e.sqlDB.SetMaxIdleConns(poolSize)
	db, err := gorm.Open(gormpostgres.New(gormpostgres.Config{Conn: e.sqlDB}), &gorm.Config{Logger: discardLogger})
	if err != nil {
		return fmt.Errorf("open gorm: %w", err)
	}
	if err := migrate.Up(ctx, db); err != nil {
		return err
	}
	e.repo = repository.New(db)

	if err := e.openNaive(cfg.ConnConfig.Copy()); err != nil {
		return err
	}

	// The baseline's side: a pgxpool with the same connection settings.
	cfg.ConnConfig.DialFunc = e.pgxIO.dial(cfg.ConnConfig.DialFunc)
	if e.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return fmt.Errorf("open pgxpool: %w", err)
	}
	e.base = &baseline{conn: pgxConn{pool: e.pool}, sql: pgStatements}
	return nil
}

// close closes the pools and drops the database.
func (e *env) close() error {
	for _, p := range []*pgxpool.Pool{e.pool, e.seed} {
		if p != nil {
			p.Close()
		}
	}
	if e.sqlDB != nil {
		_ = e.sqlDB.Close()
	}
	if e.naiveSQL != nil {
		_ = e.naiveSQL.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+e.dbName+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", e.dbName, err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ioCounter counts the bytes written to and read from the connections of
// one pool, at the socket: what the driver sends is the statement, its
// arguments and the protocol framing, whatever builds them.
type ioCounter struct {
	sent, received atomic.Int64
}

func (c *ioCounter) dial(next pgconn.DialFunc) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return c.count(next(ctx, network, addr))
	}
}

// count returns conn, just dialled, counting its bytes in c.
func (c *ioCounter) count(conn net.Conn, err error) (net.Conn, error) {
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, c: c}, nil
}

// snapshot returns the bytes counted so far.
func (c *ioCounter) snapshot() (sent, received int64) {
	return c.sent.Load(), c.received.Load()
}

type countingConn struct {
	net.Conn
	c *ioCounter
}

func (cc *countingConn) Write(p []byte) (int, error) {
	n, err := cc.Conn.Write(p)
	cc.c.sent.Add(int64(n))
	return n, err
}

func (cc *countingConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	cc.c.received.Add(int64(n))
	return n, err
}
