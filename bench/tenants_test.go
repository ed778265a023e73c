package bench

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	gormpostgres "gorm.io/driver/postgres"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/workload"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// tenantCounts are the numbers of tenants BenchmarkTenants spreads its
// writes over. 1,000 tenants take a minute or more to migrate and several
// minutes to measure, so they run only with BENCH_TENANTS set.
func tenantCounts() []int {
	counts := []int{1, 100}
	if os.Getenv("BENCH_TENANTS") != "" {
		counts = append(counts, 1000)
	}
	return counts
}

// tenantMode is a way to configure pgx for many tenants that a user can
// choose in the DSN alone: params are added to its query.
type tenantMode struct {
	name   string
	params func(tenants int) map[string]string
}

var tenantModes = []tenantMode{
	// pgx's default: QueryExecModeCacheStatement with 512 statements per
	// connection, each prepared on the server.
	{"default", func(int) map[string]string { return nil }},
	// The same cache, large enough for every tenant's statements.
	{"cache_statement_sized", func(t int) map[string]string {
		return map[string]string{"statement_cache_capacity": strconv.Itoa(sizedCache(t))}
	}},
	// Unnamed statements, with the result's description cached: nothing
	// stays prepared on the server, but a miss still costs a round trip.
	{"cache_describe_sized", func(t int) map[string]string {
		return map[string]string{"default_query_exec_mode": "cache_describe", "description_cache_capacity": strconv.Itoa(sizedCache(t))}
	}},
	// No cache: every statement is described, then executed.
	{"describe_exec", func(int) map[string]string {
		return map[string]string{"default_query_exec_mode": "describe_exec"}
	}},
	// No cache and no describe: parameter types are taken from the Go
	// types of the arguments.
	{"exec", func(int) map[string]string {
		return map[string]string{"default_query_exec_mode": "exec"}
	}},
}

// sizedCache is a cache capacity that holds every statement of tenants
// tenants, with room for a few more than tenantStatements each.
func sizedCache(tenants int) int { return max(512, 32*tenants) }

// BenchmarkTenants measures the repository's writes spread over many
// tenant schemas on one pool of poolSize connections, under each
// tenantMode. One op is one feature run of workload.Generate (80 writes),
// run i in tenant i mod tenants, on poolSize workers; every statement
// names its tables in the tenant's schema, so tenants send about
// tenantStatements×tenants distinct statement texts, which pgx's default
// cache of 512 per connection cannot hold beyond about 20 tenants.
//
// Reported per write (ns/write) alongside the per-run ns/op, and, from the
// frontend messages the connections carry, Parse messages (parses/write:
// statements prepared or described anew) and round trips (Sync and simple
// Query messages, trips/write). After the timed runs the pool's
// connections report the statements they hold prepared on the server and
// their backends' memory (prepared/conn, backend-MB/conn, the mean over
// the connections).
//
// Each case opens a fresh pool, so every mode starts from an empty cache,
// and warms it up with one untimed run per tenant first. Run it with
// -benchtime Nx, N a few times the tenants, so that the timed runs visit
// every tenant: `go test ./bench/ -run '^$' -bench '^BenchmarkTenants$'
// -benchtime 300x`; BENCH_TENANTS=1 adds 1,000 tenants.
func BenchmarkTenants(b *testing.B) {
	for _, tenants := range tenantCounts() {
		for _, mode := range tenantModes {
			b.Run(fmt.Sprintf("tenants=%d/dsn=%s", tenants, mode.name), func(b *testing.B) {
				te := setupTenants(b, tenants)
				benchTenants(b, te, tenants, mode.params(tenants))
			})
		}
	}
}

func benchTenants(b *testing.B, te *tenantsEnv, tenants int, params map[string]string) {
	ctx := b.Context()
	var wire wireCounter
	db, sqlDB := te.open(b, params, &wire)
	defer sqlDB.Close()
	repos := make([]*repository.Repository, tenants)
	for i := range repos {
		repos[i] = repository.New(db, repository.InSchema(tenantName(i)))
	}
	prefix := randomHex(8) + "/"
	gen := func(label string, n int) []tenantRun {
		runs := make([]tenantRun, n)
		for i := range runs {
			runs[i] = tenantRun{repos[i%tenants], workload.Generate(int64(i), prefix+label+strconv.Itoa(i))}
		}
		return runs
	}
	if err := runTenants(ctx, gen("warm-up/", max(tenants, poolSize))); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	runs := gen("", b.N)
	writes := 0
	for _, r := range runs {
		writes += len(r.steps)
	}
	runtime.GC()
	before := wire.snapshot()
	b.ResetTimer()
	err := runTenants(ctx, runs)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	after := wire.snapshot()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(writes), "ns/write")
	b.ReportMetric(float64(after.parses-before.parses)/float64(writes), "parses/write")
	b.ReportMetric(float64(after.trips-before.trips)/float64(writes), "trips/write")
	prepared, mem, err := backendState(ctx, sqlDB)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(prepared, "prepared/conn")
	b.ReportMetric(mem/(1<<20), "backend-MB/conn")
}

// tenantRun is a feature run's steps, to execute in a tenant's Repository.
type tenantRun struct {
	repo  *repository.Repository
	steps []workload.Step
}

// runTenants executes runs on poolSize workers, the steps of each run in
// order, and returns the first error a step's policy refused.
func runTenants(ctx context.Context, runs []tenantRun) error {
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range poolSize {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(runs)); i = next.Add(1) - 1 {
				for _, step := range runs[i].steps {
					if err := workload.Exec(ctx, runs[i].repo, step, workload.InOrder); err != nil {
						errOnce.Do(func() { first = err; cancel() })
						return
					}
				}
			}
		})
	}
	wg.Wait()
	return first
}

// backendState returns, as means over the pool's connections, how many
// statements each holds prepared on the server and how many bytes of
// memory its backend uses. It holds every connection of the pool at once,
// so that each is asked once.
func backendState(ctx context.Context, sqlDB *sql.DB) (prepared, mem float64, err error) {
	conns := make([]*sql.Conn, 0, poolSize)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range sqlDB.Stats().OpenConnections {
		c, err := sqlDB.Conn(ctx)
		if err != nil {
			return 0, 0, err
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		var n, bytes int64
		// The simple protocol, so that asking prepares nothing.
		if err := c.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM pg_prepared_statements), (SELECT sum(total_bytes) FROM pg_backend_memory_contexts)::bigint`, pgx.QueryExecModeSimpleProtocol).Scan(&n, &bytes); err != nil {
			return 0, 0, err
		}
		prepared += float64(n)
		mem += float64(bytes)
	}
	k := float64(max(1, len(conns)))
	return prepared / k, mem / k, nil
}

// tenantName is the schema of tenant i.
func tenantName(i int) string { return fmt.Sprintf("tenant_%04d", i) }

// tenantsEnv is a database of the benchmark's own holding tenant schemas,
// made on first use and dropped by TestMain.
type tenantsEnv struct {
	admin  *sql.DB
	dbName string
	// migrator is the pool the schemas are migrated through.
	migrator *gorm.DB
	// schemas is how many tenants' schemas exist, tenant_0000 first.
	schemas int
}

var sharedTenants struct {
	mu  sync.Mutex
	env *tenantsEnv
}

// setupTenants returns the process's tenants database with at least
// tenants schemas, creating what is missing.
func setupTenants(b *testing.B, tenants int) *tenantsEnv {
	b.Helper()
	admin := dbtest.PostgresServer(b)
	sharedTenants.mu.Lock()
	defer sharedTenants.mu.Unlock()
	if sharedTenants.env == nil {
		e, err := newTenantsEnv(admin)
		if err != nil {
			b.Fatalf("tenants database: %v", err)
		}
		sharedTenants.env = e
	}
	e := sharedTenants.env
	if e.schemas < tenants {
		start := time.Now()
		if err := e.migrate(b.Context(), tenants); err != nil {
			b.Fatalf("migrate %d tenants: %v", tenants, err)
		}
		b.Logf("migrated tenants %d to %d in %v", e.schemas, tenants-1, time.Since(start).Round(time.Millisecond))
		e.schemas = tenants
	}
	return e
}

func newTenantsEnv(admin *sql.DB) (*tenantsEnv, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := &tenantsEnv{admin: admin, dbName: "persistence_tenants_" + randomHex(6)}
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+e.dbName+" TEMPLATE template0"); err != nil {
		return nil, fmt.Errorf("create database: %w", err)
	}
	// As for the other benchmarks: the commit's WAL flush costs every mode
	// the same and would bury the differences between them.
	if _, err := admin.ExecContext(ctx, "ALTER DATABASE "+e.dbName+" SET synchronous_commit = 'off'"); err != nil {
		return nil, errors.Join(err, e.close())
	}
	var err error
	cfg, err := pgx.ParseConfig(e.dsn(nil))
	if err != nil {
		return nil, errors.Join(err, e.close())
	}
	sqlDB := stdlib.OpenDB(*cfg)
	sqlDB.SetMaxOpenConns(2 * poolSize)
	if e.migrator, err = gorm.Open(gormpostgres.New(gormpostgres.Config{Conn: sqlDB}), &gorm.Config{Logger: discardLogger}); err != nil {
		return nil, errors.Join(err, e.close())
	}
	return e, nil
}

// migrate creates the schemas of tenants e.schemas to tenants-1. The
// first is made by migrate.Up; the others by migrate/sql/postgres's
// schema.sql, which is the schema Up makes (migrate's tests hold it to
// that), each in one round trip: on this shared machine Up takes about a
// second per schema even in parallel, 1,000 schemas a quarter of an hour.
// A check then compares every schema's catalog with the first's.
func (e *tenantsEnv) migrate(ctx context.Context, tenants int) error {
	from := e.schemas
	if from == 0 {
		if err := migrate.Up(ctx, e.migrator, migrate.InSchema(tenantName(0))); err != nil {
			return err
		}
		from = 1
	}
	ddl, err := os.ReadFile("../migrate/sql/postgres/schema.sql")
	if err != nil {
		return err
	}
	sqlDB, err := e.migrator.DB()
	if err != nil {
		return err
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		errs = make([]error, tenants)
	)
	next.Store(int64(from))
	for range poolSize {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < tenants; i = int(next.Add(1) - 1) {
				name := tenantName(i)
				_, errs[i] = sqlDB.ExecContext(ctx, "BEGIN; CREATE SCHEMA "+name+"; SET LOCAL search_path TO "+name+";\n"+string(ddl)+"\nCOMMIT;", pgx.QueryExecModeSimpleProtocol)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Each schema's relations, columns, indexes and constraints, by
	// name and definition, against the first's.
	var differ []string
	rows, err := sqlDB.QueryContext(ctx, `WITH objects AS (
	SELECT n.nspname AS schema, c.relname || ' ' || c.relkind::text || ' ' || coalesce(pg_get_indexdef(c.oid), '') AS object
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname LIKE 'tenant\_%'
	UNION ALL
	SELECT n.nspname, c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull::text
	FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE n.nspname LIKE 'tenant\_%' AND a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT n.nspname, co.conname || ' ' || pg_get_constraintdef(co.oid)
	FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace WHERE n.nspname LIKE 'tenant\_%'
), catalogs AS (
	SELECT schema, md5(string_agg(replace(object, schema || '.', ''), E'\n' ORDER BY object)) AS sum FROM objects GROUP BY schema
)
SELECT schema FROM catalogs WHERE sum <> (SELECT sum FROM catalogs WHERE schema = 'tenant_0000')`, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return err
		}
		differ = append(differ, name)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(differ) > 0 {
		return fmt.Errorf("%d schemas differ from migrate.Up's tenant_0000, such as %s: regenerate migrate/sql with scripts/schema-sql.sh", len(differ), differ[0])
	}
	return nil
}

// dsn is the test server's DSN on e's database, with params added.
func (e *tenantsEnv) dsn(params map[string]string) string {
	u, err := url.Parse(dbtest.PostgresDSN())
	if err != nil {
		panic(err)
	}
	u.Path = "/" + e.dbName
	q := u.Query()
	for k, v := range params {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// open opens a GORM of default configuration on a pool of poolSize
// connections to e's database, its DSN carrying params, its frontend
// messages counted in wire.
func (e *tenantsEnv) open(b *testing.B, params map[string]string, wire *wireCounter) (*gorm.DB, *sql.DB) {
	cfg, err := pgx.ParseConfig(e.dsn(params))
	if err != nil {
		b.Fatalf("parse DSN: %v", err)
	}
	next := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &wireConn{Conn: conn, c: wire, untyped: true}, nil
	}
	sqlDB := stdlib.OpenDB(*cfg)
	sqlDB.SetMaxOpenConns(poolSize)
	sqlDB.SetMaxIdleConns(poolSize)
	db, err := gorm.Open(gormpostgres.New(gormpostgres.Config{Conn: sqlDB}), &gorm.Config{Logger: discardLogger})
	if err != nil {
		b.Fatalf("open gorm: %v", err)
	}
	return db, sqlDB
}

// close drops the database, and with it every tenant's schema.
func (e *tenantsEnv) close() error {
	if e.migrator != nil {
		if sqlDB, err := e.migrator.DB(); err == nil {
			_ = sqlDB.Close()
		}
	}
	// Dropping 1,000 schemas' files took more than a minute on the
	// loaded machine the benchmark was written on.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := e.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+e.dbName+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", e.dbName, err)
	}
	return nil
}

// wireCounter counts the frontend messages of PostgreSQL's protocol that
// matter for the statement cache: Parse (a statement prepared, or
// described for an unnamed one), and what ends a round trip, Sync of the
// extended protocol and Query of the simple one.
type wireCounter struct {
	parses, trips atomic.Int64
}

type wireCounts struct{ parses, trips int64 }

func (c *wireCounter) snapshot() wireCounts {
	return wireCounts{c.parses.Load(), c.trips.Load()}
}

// wireConn counts the messages written to a connection. Each message is a
// type byte and a length that counts itself and the body, except the
// first, the startup message, which has no type byte; the benchmark's DSN
// disables TLS, so no SSLRequest comes before it.
type wireConn struct {
	net.Conn
	c *wireCounter
	// untyped is set until the startup message's header is read.
	untyped bool
	// hdr holds the part of a message header read so far.
	hdr  [5]byte
	hdrN int
	// skip is how many bytes of the current message's body remain.
	skip int
}

func (w *wireConn) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	w.scan(p[:n])
	return n, err
}

func (w *wireConn) scan(p []byte) {
	for len(p) > 0 {
		if w.skip > 0 {
			k := min(w.skip, len(p))
			w.skip -= k
			p = p[k:]
			continue
		}
		size := 5
		if w.untyped {
			size = 4
		}
		k := copy(w.hdr[w.hdrN:size], p)
		w.hdrN += k
		p = p[k:]
		if w.hdrN < size {
			return
		}
		w.hdrN = 0
		if w.untyped {
			w.untyped = false
			w.skip = int(binary.BigEndian.Uint32(w.hdr[:4])) - 4
			continue
		}
		switch w.hdr[0] {
		case 'P':
			w.c.parses.Add(1)
		case 'S', 'Q':
			w.c.trips.Add(1)
		}
		w.skip = int(binary.BigEndian.Uint32(w.hdr[1:5])) - 4
	}
}

// TestWireCounter checks the counts BenchmarkTenants reports on a stream
// of a startup message, a Parse, a Bind and a Sync, then a Query, written
// in pieces that split headers and bodies.
func TestWireCounter(t *testing.T) {
	msg := func(typ byte, body string) []byte {
		m := []byte{typ, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(m[1:], uint32(4+len(body)))
		return append(m, body...)
	}
	startup := binary.BigEndian.AppendUint32(nil, uint32(4+4+len("user\x00postgres\x00\x00")))
	startup = binary.BigEndian.AppendUint32(startup, 196608)
	startup = append(startup, "user\x00postgres\x00\x00"...)
	var stream []byte
	stream = append(stream, startup...)
	// A Parse whose body holds the letters P and S, which must not count.
	stream = append(stream, msg('P', "stmt\x00SELECT 'PS'\x00\x00\x00")...)
	stream = append(stream, msg('B', "\x00stmt\x00\x00\x00\x00\x00\x00\x00")...)
	stream = append(stream, msg('S', "")...)
	stream = append(stream, msg('Q', "SELECT 1\x00")...)
	for _, piece := range []int{1, 2, 3, 7, len(stream)} {
		var c wireCounter
		w := &wireConn{c: &c, untyped: true}
		for rest := stream; len(rest) > 0; {
			n := min(piece, len(rest))
			w.scan(rest[:n])
			rest = rest[n:]
		}
		if got, want := c.snapshot(), (wireCounts{parses: 1, trips: 2}); got != want {
			t.Errorf("written %d bytes at a time: counted %+v, want %+v", piece, got, want)
		}
	}
}
