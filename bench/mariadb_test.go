package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	gormmysql "gorm.io/driver/mysql"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/dialect/dialecttest"
	"github.com/agentpipeline/persistence/internal/dialect/mariadb"
	"github.com/agentpipeline/persistence/internal/workload"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// mariadbStatements are the repository's statements on MariaDB. The
// creates' are written out (TestBaselineSendsRepositoryStatements checks
// them); each transition is its guarded UPDATE, then, when that changed no
// row, the probe that reads the outcome code in share mode (see package
// internal/dialect/mariadb), each with the placeholders ? that
// dialect.Statement.Args binds.
var mariadbStatements = statementsOn(&mariadb.Dialect, statements{
	insertFeatureRun:      "INSERT INTO `feature_runs` (`id`,`phase`,`status`,`memories`,`metadata`,`created_at`,`updated_at`) VALUES (?,?,?,?,?,?,?) ON DUPLICATE KEY UPDATE `id`=`id`",
	insertSandbox:         "INSERT INTO `sandboxes` (`id`,`feature_run_id`,`status`,`provider`,`metadata`,`created_at`,`updated_at`) VALUES (?,?,?,?,?,?,?) ON DUPLICATE KEY UPDATE `id`=`id`",
	insertPhaseResult:     "INSERT INTO `phase_results` (`id`,`feature_run_id`,`phase`,`status`,`created_at`,`updated_at`) VALUES (?,?,?,?,?,?) ON DUPLICATE KEY UPDATE `id`=`id`",
	insertAgentInvocation: "INSERT INTO `agent_invocations` (`id`,`feature_run_id`,`phase_result_id`,`parent_invocation_id`,`agent`,`model`,`provider`,`status`,`input`,`input_tokens`,`output_tokens`,`cache_read_input_tokens`,`cache_write_input_tokens`,`reasoning_output_tokens`,`cost_nano_usd`,`started_at`,`created_at`,`updated_at`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON DUPLICATE KEY UPDATE `id`=`id`",
	insertCTAEvent:        "INSERT INTO `cta_events` (`id`,`feature_run_id`,`kind`,`status`,`request_data`,`expires_at`,`created_at`,`updated_at`) VALUES (?,?,?,?,?,?,?,?) ON DUPLICATE KEY UPDATE `id`=`id`",
})

// sqlConn is the baseline's conn on MariaDB: database/sql over
// go-sql-driver/mysql, as the repository's side uses it under GORM.
type sqlConn struct{ db *sql.DB }

func (c sqlConn) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := c.db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c sqlConn) code(ctx context.Context, query string, args ...any) (int64, error) {
	var code int64
	err := c.db.QueryRowContext(ctx, query, args...).Scan(&code)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return code, err
}

// mariadbSeeds are the seeder's statements on MariaDB (10.5 and later
// return the rows an INSERT inserted). Rows are numbered by the Sequence
// engine's seq_1_to_N table, bounded by a parameter, as generate_series
// numbers them on PostgreSQL; the derived table a binds the parameters
// in the order the PostgreSQL statements take them.
var mariadbSeeds = seedStatements{
	runs: `
INSERT INTO feature_runs (id, phase, status, memories, created_at, updated_at)
SELECT UUID(), 'plan', a.status,
	(SELECT COALESCE(CONCAT('[', GROUP_CONCAT(CONCAT('"stored ', m.seq, '"') ORDER BY m.seq SEPARATOR ','), ']'), '[]')
		FROM seq_1_to_1000000 AS m WHERE m.seq <= a.stored),
	UTC_TIMESTAMP(6), UTC_TIMESTAMP(6)
FROM (SELECT ? AS n, ? AS status, ? AS stored) AS a JOIN seq_1_to_1000000 AS g ON g.seq <= a.n
RETURNING id`,
	phases: `
INSERT INTO phase_results (id, feature_run_id, phase, status, created_at, updated_at)
SELECT UUID(), a.run, 'plan', a.status, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6)
FROM (SELECT ? AS n, ? AS run, ? AS status) AS a JOIN seq_1_to_1000000 AS g ON g.seq <= a.n
RETURNING id`,
	invocations: `
INSERT INTO agent_invocations (id, feature_run_id, agent, model, status, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at)
SELECT UUID(), a.run, 'coder', 'model', a.status, 0, 0, 0, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6)
FROM (SELECT ? AS n, ? AS run, ? AS status) AS a JOIN seq_1_to_1000000 AS g ON g.seq <= a.n
RETURNING id`,
	sandboxes: `
INSERT INTO sandboxes (id, feature_run_id, status, provider, created_at, updated_at)
SELECT CONCAT('sb-', UUID()), a.run, a.status, 'e2b', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6)
FROM (SELECT ? AS n, ? AS run, ? AS status) AS a JOIN seq_1_to_1000000 AS g ON g.seq <= a.n
RETURNING id`,
	ctaEvents: `
INSERT INTO cta_events (id, feature_run_id, kind, status, created_at, updated_at)
SELECT CONCAT('cta-', UUID()), a.run, 'approval', a.status, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6)
FROM (SELECT ? AS n, ? AS run, ? AS status) AS a JOIN seq_1_to_1000000 AS g ON g.seq <= a.n
RETURNING id`,
}

// mariadbEnv is the MariaDB database the benchmarks of one process run
// against, with the repository and the baseline writing to the same
// tables, each through a pool of its own.
type mariadbEnv struct {
	admin  *sql.DB
	dbName string

	repoSQL, baseSQL *sql.DB
	// seedSQL seeds, on connections neither timed side uses (see
	// backend.ids).
	seedSQL *sql.DB
	repo    *repository.Repository
	base    *baseline

	repoIO, mysqlIO ioCounter
}

var sharedMariaDB struct {
	once sync.Once
	// unreachable is why the server did not answer, if it did not.
	unreachable error
	env         *mariadbEnv
	err         error
}

// setupMariaDB returns the process's MariaDB benchmark database, on the
// server at TEST_MARIADB_DSN (default: internal/dbtest's), creating and
// migrating it on first use. Without a server it skips tb, or fails it
// when CI is set, as dbtest.MariaDB does.
func setupMariaDB(tb testing.TB) *mariadbEnv {
	tb.Helper()
	sh := &sharedMariaDB
	sh.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var admin *sql.DB
		if admin, sh.unreachable = openMariaDB(ctx, "", nil); sh.unreachable == nil {
			sh.env, sh.err = newMariaDBEnv(ctx, admin)
		}
	})
	if sh.unreachable != nil {
		dialecttest.Unreachable(tb, "MariaDB", dbtest.MariaDBDSN(), sh.unreachable)
	}
	if sh.err != nil {
		tb.Fatalf("MariaDB benchmark database: %v", sh.err)
	}
	return sh.env
}

// openMariaDB opens a pool of connections to database dbName (the DSN's
// own when empty) on the server at TEST_MARIADB_DSN, and pings it. When
// counter is not nil, the pool's connections count their bytes in it.
func openMariaDB(ctx context.Context, dbName string, counter *ioCounter) (*sql.DB, error) {
	cfg, err := mariadb.Config(dbtest.MariaDBDSN())
	if err != nil {
		return nil, err
	}
	if dbName != "" {
		cfg.DBName = dbName
	}
	if counter != nil {
		// go-sql-driver/mysql dials a network registered under a name of
		// its own with the function registered for it.
		network, next := fmt.Sprintf("bench-%p", counter), cfg.Net
		mysql.RegisterDialContext(network, func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return counter.count(d.DialContext(ctx, next, addr))
		})
		cfg.Net = network
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(poolSize)
	db.SetMaxIdleConns(poolSize)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

func newMariaDBEnv(ctx context.Context, admin *sql.DB) (*mariadbEnv, error) {
	e := &mariadbEnv{admin: admin, dbName: "persistence_bench_" + randomHex(6)}
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+e.dbName); err != nil {
		return nil, fmt.Errorf("create database: %w", err)
	}
	if err := e.open(ctx); err != nil {
		return nil, errors.Join(err, e.close())
	}
	return e, nil
}

func (e *mariadbEnv) open(ctx context.Context) error {
	// The repository's side: GORM with its default configuration over
	// database/sql and go-sql-driver/mysql, as a caller would open it
	// (gorm.io/driver/mysql asks the server its version), with its
	// logger's output discarded.
	var err error
	if e.repoSQL, err = openMariaDB(ctx, e.dbName, &e.repoIO); err != nil {
		return err
	}
	db, err := gorm.Open(gormmysql.New(gormmysql.Config{Conn: e.repoSQL}), &gorm.Config{Logger: discardLogger})
	if err != nil {
		return fmt.Errorf("open gorm: %w", err)
	}
	if err := migrate.Up(ctx, db); err != nil {
		return err
	}
	e.repo = repository.New(db)

	// The baseline's side: the same DSN, driver and pool size.
	if e.baseSQL, err = openMariaDB(ctx, e.dbName, &e.mysqlIO); err != nil {
		return err
	}
	e.base = &baseline{conn: sqlConn{db: e.baseSQL}, sql: mariadbStatements}
	e.seedSQL, err = openMariaDB(ctx, e.dbName, nil)
	return err
}

// close closes the pools and drops the database.
func (e *mariadbEnv) close() error {
	for _, db := range []*sql.DB{e.repoSQL, e.baseSQL, e.seedSQL} {
		if db != nil {
			_ = db.Close()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := e.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+e.dbName)
	_ = e.admin.Close()
	if err != nil {
		return fmt.Errorf("drop database %s: %w", e.dbName, err)
	}
	return nil
}

func (e *mariadbEnv) store(impl string) (workload.Store, *ioCounter) {
	switch impl {
	case implRepository:
		return e.repo, &e.repoIO
	case implFenced:
		return e.repo.AtStep(fenceStep), &e.repoIO
	}
	return e.base, &e.mysqlIO
}

func (e *mariadbEnv) seedStatements() *seedStatements { return &mariadbSeeds }

// analyze does nothing: InnoDB recalculates a table's statistics itself
// once a tenth of its rows changed (innodb_stats_auto_recalc, on by
// default), and MariaDB caches no plan across executions.
func (e *mariadbEnv) analyze(context.Context) error { return nil }

func (e *mariadbEnv) ids(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := e.seedSQL.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func (e *mariadbEnv) reader() *sql.DB { return e.repoSQL }
