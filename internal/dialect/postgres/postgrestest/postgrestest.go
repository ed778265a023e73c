// Package postgrestest opens PostgreSQL databases for tests: a schema of
// its own on the test server for each test.
package postgrestest

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	gormpostgres "gorm.io/driver/postgres"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dialect/dialecttest"
	"github.com/agentpipeline/persistence/internal/dialect/postgres"
)

// Test is how tests get a PostgreSQL database.
var Test = dialecttest.Test{
	Dialect:    &postgres.Dialect,
	EnvVar:     "TEST_POSTGRES_DSN",
	DefaultDSN: "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
	Fresh:      Fresh,
	Migrated:   Migrated,
	Server:     Admin,
	Dialector:  dialector,
	Catalog:    catalog,
}

// Admin returns a pool of connections to the default schema of the server
// at dsn, shared by the tests of the process, for tests that inspect the
// server itself. When no server answers, tb skips, or fails where the CI
// environment variable is set.
func Admin(tb testing.TB, dsn string) *sql.DB {
	tb.Helper()
	return dialecttest.Admin(tb, "PostgreSQL", dsn, "pgx", dsn)
}

// Fresh creates a schema of its own on the server at dsn and returns a
// pool whose connections use it; see dialecttest.Test.Fresh.
func Fresh(tb testing.TB, dsn string) *sql.DB {
	tb.Helper()
	return FreshWithParams(tb, dsn, nil)
}

// FreshWithParams is Fresh with params added to the DSN of every
// connection of the pool, such as application_name, which lets a test find
// its own backends in pg_stat_activity (to terminate them) without
// touching those of tests running in parallel against the same server.
func FreshWithParams(tb testing.TB, dsn string, params map[string]string) *sql.DB {
	tb.Helper()
	db, _ := FreshSchema(tb, dsn, params)
	return db
}

// FreshSchema is FreshWithParams that also returns the schema's name.
//
// Without params, the pool's connections come from server connections
// the process's tests share (see shared): each test still has its
// schema, and every connection it gets is set to it and used by it alone
// until its pool closes.
func FreshSchema(tb testing.TB, dsn string, params map[string]string) (*sql.DB, string) {
	tb.Helper()
	admin := Admin(tb, dsn)
	schema := createSchema(tb, admin)
	var sqlDB *sql.DB
	closeDB := func() { _ = sqlDB.Close() }
	if len(params) == 0 {
		sqlDB, closeDB = shared(tb, dsn, schema)
	} else {
		params = maps.Clone(params)
		// The search path names the schema, so that every connection,
		// including the first, uses it.
		params["search_path"] = schema
		var err error
		if sqlDB, err = sql.Open("pgx", withParams(tb, dsn, params)); err != nil {
			tb.Fatalf("open postgres: %v", err)
		}
	}
	keepConns(sqlDB)
	tb.Cleanup(func() {
		closeDB()
		if err := dropSchema(admin, schema); err != nil {
			tb.Error(err)
		}
	})
	return sqlDB, schema
}

// createSchema creates a schema with a new name through admin and
// returns its name.
func createSchema(tb testing.TB, admin *sql.DB) string {
	tb.Helper()
	schema := dialecttest.Name()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	return schema
}

// dropSchema drops schema, with everything in it, through admin, and
// counts it for the catalog's vacuum (see dropped).
func dropSchema(admin *sql.DB, schema string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
		return fmt.Errorf("drop schema %s: %w", schema, err)
	}
	if err := dropped(admin); err != nil {
		return fmt.Errorf("vacuum the catalog: %w", err)
	}
	return nil
}

// keepConns sets the connection limits of a test's pool. database/sql
// keeps 2 idle connections by default: the rest of a burst of concurrent
// calls would close, and the next burst start new server processes, which
// cost the server more CPU than the tests' statements.
func keepConns(db *sql.DB) {
	db.SetMaxOpenConns(40)
	db.SetMaxIdleConns(40)
}

// backends holds, per server DSN, the server connections that the pools
// of FreshSchema without params share. A new PostgreSQL connection costs
// the server a process and cold catalog caches: some 30 ms of CPU on a
// small machine. With a connection of its own for each test's pool, the
// root package's contract suite started 433 sessions under -short; run
// alone, it took 37 s, PostgreSQL 37 core-seconds of it, against 29.5 s
// and 18 with shared ones.
var backends = struct {
	sync.Mutex
	pools map[string]*pgxpool.Pool
}{pools: map[string]*pgxpool.Pool{}}

// closedByPool is the key, in the custom data of a server connection a
// test's pool holds, of the flag that this pool is closing: see reset.
const closedByPool = "postgrestest.closed-by-pool"

// shared returns a pool of the server connections shared for dsn, each
// set to use schema, and the function that closes it, which gives its
// connections back for other tests' pools (see reset).
func shared(tb testing.TB, dsn, schema string) (*sql.DB, func()) {
	tb.Helper()
	backends.Lock()
	defer backends.Unlock()
	pool := backends.pools[dsn]
	if pool == nil {
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			tb.Fatalf("the PostgreSQL DSN %q: %v", dsn, err)
		}
		// As many as the server takes: a test's pool holds its
		// connections until it closes, and the tests running side by
		// side held fewer than the server's default limit of 100 when
		// each opened its own. Idle ones close soon, leaving the
		// server's connections to other packages' tests.
		cfg.MaxConns = 100
		cfg.MaxConnIdleTime = 2 * time.Second
		cfg.HealthCheckPeriod = time.Second
		cfg.AfterRelease = reset
		if pool, err = pgxpool.NewWithConfig(context.Background(), cfg); err != nil {
			tb.Fatalf("open postgres: %v", err)
		}
		backends.pools[dsn] = pool
	}
	c := schemaConnector{
		Connector: stdlib.GetPoolConnector(pool),
		search:    "SET search_path = " + pgx.Identifier{schema}.Sanitize(),
		closing:   new(atomic.Bool),
	}
	db := sql.OpenDB(c)
	return db, func() {
		c.closing.Store(true)
		_ = db.Close()
	}
}

// schemaConnector hands a test's pool shared server connections set to
// the test's schema, search.
type schemaConnector struct {
	driver.Connector
	search  string
	closing *atomic.Bool
}

// Connect takes a shared connection and sets its search path. The
// connection is the driver's own, so that what the package does with a
// pgx connection (asking the server to cancel its statement) it does here.
func (c schemaConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	pgxConn := conn.(*stdlib.Conn).Conn()
	if _, err := pgxConn.Exec(ctx, c.search); err != nil {
		_ = conn.Close()
		return nil, err
	}
	pgxConn.PgConn().CustomData()[closedByPool] = c.closing
	return conn, nil
}

// reset readies a shared connection, released by a test's pool, for the
// next: it returns false, and the connection is closed, unless the pool
// released it because it was closing. A connection released before is
// one database/sql found bad, or the package closed after asking the
// server to cancel its statement: a request still on its way could
// cancel the next test's statement. The rest is what DISCARD ALL resets
// (settings, search path included, prepared statements, temporary
// tables, advisory locks), and pgx's cache of prepared statements.
func reset(conn *pgx.Conn) bool {
	closing, _ := conn.PgConn().CustomData()[closedByPool].(*atomic.Bool)
	delete(conn.PgConn().CustomData(), closedByPool)
	if closing == nil || !closing.Load() {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := conn.DeallocateAll(ctx); err != nil {
		return false
	}
	_, err := conn.Exec(ctx, "DISCARD ALL")
	return err == nil
}

// vacuumEvery is how many schemas a process drops between two vacuums of
// the catalog, where the server's autovacuum is off (see dropped): about
// 25 MB of dead catalog rows.
const vacuumEvery = 200

// catalogTables are the catalog tables in which a test's schema leaves
// rows behind when it is dropped: those of its tables, their columns,
// types, indexes, constraints, foreign key triggers, TOAST tables and the
// dependencies between them.
const catalogTables = "pg_catalog.pg_class, pg_catalog.pg_attribute, pg_catalog.pg_type, pg_catalog.pg_depend, " +
	"pg_catalog.pg_index, pg_catalog.pg_constraint, pg_catalog.pg_trigger, pg_catalog.pg_attrdef, " +
	"pg_catalog.pg_namespace, pg_catalog.pg_statistic"

// vacuums keeps, per server, the schemas dropped since its catalog was
// last vacuumed, and whether its autovacuum is off.
var vacuums = struct {
	sync.Mutex
	servers map[*sql.DB]*vacuumState
}{servers: map[*sql.DB]*vacuumState{}}

type vacuumState struct {
	dropped int
	// autovacuumOff asks the server once.
	autovacuumOff func() (bool, error)
}

// dropped counts a schema dropped on the server of admin, and vacuums its
// catalog every vacuumEvery schemas where the server's autovacuum is off.
// Each schema a test drops leaves hundreds of dead rows in the catalog,
// which only a vacuum reclaims: on a server without autovacuum they pile
// up run after run, and every schema created and every statement planned
// wades through them. Six runs of the suite left 900,000 dead rows in
// pg_attribute, and the server used a quarter more CPU for the same
// tests. A vacuum takes no lock that DDL waits for.
func dropped(admin *sql.DB) error {
	vacuums.Lock()
	v := vacuums.servers[admin]
	if v == nil {
		v = &vacuumState{autovacuumOff: sync.OnceValues(func() (bool, error) {
			var setting string
			err := admin.QueryRow("SHOW autovacuum").Scan(&setting)
			return setting == "off", err
		})}
		vacuums.servers[admin] = v
	}
	v.dropped++
	due := v.dropped >= vacuumEvery
	if due {
		v.dropped = 0
	}
	vacuums.Unlock()
	if !due {
		return nil
	}
	return vacuum(admin, v)
}

// VacuumCatalogs vacuums the catalog of each server on which the process
// dropped a schema since the last vacuum, where the server's autovacuum
// is off: a test binary calls it once its tests have run, so that the next
// run starts from a catalog without their dead rows.
func VacuumCatalogs() error {
	vacuums.Lock()
	due := map[*sql.DB]*vacuumState{}
	for admin, v := range vacuums.servers {
		if v.dropped > 0 {
			v.dropped = 0
			due[admin] = v
		}
	}
	vacuums.Unlock()
	var errs []error
	for admin, v := range due {
		errs = append(errs, vacuum(admin, v))
	}
	return errors.Join(errs...)
}

// vacuum vacuums the catalog tables of admin's database if the server's
// autovacuum is off. SKIP_LOCKED passes over a table another vacuum
// holds.
func vacuum(admin *sql.DB, v *vacuumState) error {
	if off, err := v.autovacuumOff(); err != nil || !off {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := admin.ExecContext(ctx, "VACUUM (SKIP_LOCKED) "+catalogTables)
	return err
}

// Database creates an empty database of its own on the server at dsn and
// returns its name. It is dropped when the test ends, with any session
// still connected to it. It is for tests whose connections cannot choose a
// schema, such as those through PgBouncer, which refuses search_path as a
// startup parameter.
func Database(tb testing.TB, dsn string) string {
	tb.Helper()
	admin := Admin(tb, dsn)
	name := dialecttest.Name()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// template0, not the default template1: CREATE DATABASE refuses to copy
	// a template any other session is connected to, and template0 accepts
	// no connections.
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() {
		if _, err := admin.Exec("DROP DATABASE " + name + " WITH (FORCE)"); err != nil {
			tb.Errorf("drop database %s: %v", name, err)
		}
	})
	return name
}

// withParams returns dsn with params set in its query.
func withParams(tb testing.TB, dsn string, params map[string]string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		tb.Fatalf("the PostgreSQL DSN must be a postgres:// URL: %q", dsn)
	}
	q := u.Query()
	for k, v := range params {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func dialector(conn gorm.ConnPool) gorm.Dialector {
	return gormpostgres.New(gormpostgres.Config{Conn: conn})
}

func catalog(tb testing.TB, db *gorm.DB) []string {
	tb.Helper()
	var schema string
	if err := db.Raw("SELECT current_schema()").Scan(&schema).Error; err != nil {
		tb.Fatal(err)
	}
	unqualify := func(s string) string { return strings.ReplaceAll(s, schema+".", "") }
	var lines []string
	for _, q := range []string{
		`SELECT 'table ' || table_name || ' ' || table_type FROM information_schema.tables WHERE table_schema = current_schema()`,
		`SELECT format('column %s.%s #%s %s(%s) nullable=%s default=%s', table_name, column_name, ordinal_position, data_type,
			coalesce(character_maximum_length::text, ''), is_nullable, coalesce(column_default, 'none'))
		FROM information_schema.columns WHERE table_schema = current_schema()`,
		`SELECT 'index ' || tablename || ' ' || indexdef FROM pg_indexes WHERE schemaname = current_schema()`,
		`SELECT format('constraint %s %s %s', c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid))
		FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = current_schema()`,
		`SELECT format('trigger %s %s', tgrelid::regclass, pg_get_triggerdef(t.oid))
		FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = current_schema() AND NOT t.tgisinternal`,
	} {
		var rows []string
		if err := db.Raw(q).Scan(&rows).Error; err != nil {
			tb.Fatalf("read the catalog: %v", err)
		}
		for _, r := range rows {
			lines = append(lines, unqualify(r))
		}
	}
	return lines
}

var _ = stdlib.GetDefaultDriver // registers the "pgx" database/sql driver
