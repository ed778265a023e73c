package stack_test

import (
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/dialect/mariadb"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// The server limit and pool of TestPreparedStatementsAcrossTenants: a
// max_prepared_stmt_count far below the default 16,382, so that a few
// tenants reach it, and the connections the tenants share.
const (
	tenantPreparedLimit = 1000
	tenantConns         = 4
	// tenantMigrations is how many tenants' databases are made at once.
	tenantMigrations = 8
)

// TestPreparedStatementsAcrossTenants drives tenants, one after another,
// over one pool of tenantConns connections on a GORM that prepares its
// statements (PrepareStmt), on a MariaDB server of its own whose
// max_prepared_stmt_count is tenantPreparedLimit. A tenant's Repository
// names its tables in its own database, so each tenant adds its own
// statement texts: GORM's cache grows by the same number per tenant, and
// the server's count, which counts each text once per connection that
// prepared it, by up to that number times the connections. When the
// server's limit is reached, the write fails with
// repository.ErrPreparedStatementLimit, still wrapping the driver's error
// 1461, and the counts are logged as docs/tenants.md quotes them.
func TestPreparedStatementsAcrossTenants(t *testing.T) {
	t.Parallel()
	driveTenants(t, 0)
}

// TestPreparedStatementsAcrossTenantsBounded is
// TestPreparedStatementsAcrossTenants with GORM's cache bounded by
// PrepareStmtMaxSize to the server's limit over the connections, less a
// margin for statements closed late: its least recently used statements
// are closed on every connection, and no tenant reaches the limit.
func TestPreparedStatementsAcrossTenantsBounded(t *testing.T) {
	t.Parallel()
	driveTenants(t, tenantPreparedLimit/tenantConns-50)
}

// driveTenants drives tenants as TestPreparedStatementsAcrossTenants
// says, with GORM's PrepareStmtMaxSize maxSize (0: unbounded).
func driveTenants(t *testing.T, maxSize int) {
	server := dbtest.PrivateMariaDB(t, fmt.Sprintf("--max-prepared-stmt-count=%d", tenantPreparedLimit))
	d := openDatabase(t, server.Database())
	d.sqlDB.SetMaxOpenConns(tenantConns)
	// Idle connections kept, as a closed one takes its statements with it.
	d.sqlDB.SetMaxIdleConns(tenantConns)
	// Tenants are migrated through a pool of their own: migrate.Up closes
	// the connection it switched with USE, and a closed connection of the
	// measured pool would take its prepared statements with it.
	cfg, err := mariadb.Config(server.DSN)
	require.NoError(t, err)
	migratorDB, err := sql.Open("mysql", cfg.FormatDSN())
	require.NoError(t, err)
	t.Cleanup(func() { _ = migratorDB.Close() })
	migrator, err := gorm.Open(dbtest.TestOf(d.dialect).Dialector(migratorDB), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	db := d.open(&gorm.Config{PrepareStmt: true, PrepareStmtMaxSize: maxSize})
	cache, ok := db.ConnPool.(*gorm.PreparedStmtDB)
	require.True(t, ok, "PrepareStmt makes the pool a *gorm.PreparedStmtDB, not %T", db.ConnPool)

	var before int
	var last error
	tenants := 100
	if maxSize > 0 {
		tenants = 30
	}
	tenantName := func(k int) string { return fmt.Sprintf("tenant_%03d", k) }
	migrated := 0
	for k := 1; k <= tenants && last == nil; k++ {
		name := tenantName(k)
		if k > migrated {
			// The next tenants' databases are made a batch at a time,
			// side by side, through the migrator's pool: the server
			// spends most of a migration syncing its files, and which
			// tenants exist has no bearing on the prepared statements.
			batch := min(tenantMigrations, tenants-migrated)
			errs := dbtest.Concurrently(batch, func(i int) error {
				return migrate.Up(d.ctx, migrator, migrate.InSchema(tenantName(migrated+1+i)))
			})
			require.NoError(t, errors.Join(errs...))
			migrated += batch
		}
		repo := repository.New(db, repository.InSchema(name))
		// The writes of every key at once, so that each statement is sent
		// on several of the connections.
		var wg sync.WaitGroup
		errs := make([]error, tenantConns)
		for g := range tenantConns {
			wg.Go(func() {
				for _, w := range preparedCalls(fmt.Sprintf("%s/%d", name, g)) {
					for range 2 {
						if err := w.call(d.ctx, repo); err != nil {
							errs[g] = fmt.Errorf("%s: %w", w.name, err)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		last = errors.Join(errs...)
		cached := len(cache.Stmts.Keys())
		count := server.GlobalStatus(t, "Prepared_stmt_count")
		t.Logf("%d tenants on %d connections: GORM caches %d statements, the server holds %d prepared", k, d.sqlDB.Stats().OpenConnections, cached, count)
		assert.LessOrEqual(t, count, int64(tenantPreparedLimit), "the server keeps its limit")
		if last != nil {
			break
		}
		if maxSize > 0 {
			assert.LessOrEqual(t, cached, maxSize, "GORM's cache is bounded")
			continue
		}
		// About 23 texts each: the sweeper's claim takes one of two
		// statements, which varies with what the writes of the other keys
		// left due.
		assert.InDelta(t, 23, cached-before, 3, "tenant %d adds its own statements to GORM's cache", k)
		before = cached
		assert.LessOrEqual(t, count, int64(cached*tenantConns), "each statement is prepared at most once per connection")
		if k > 1 {
			assert.Greater(t, count, int64(cached), "statements are prepared on more than one connection")
		}
	}
	if maxSize > 0 {
		require.NoError(t, last, "%d tenants with GORM's cache bounded to %d", tenants, maxSize)
		return
	}
	require.Error(t, last, "the server's limit of %d is reached", tenantPreparedLimit)
	require.ErrorIs(t, last, repository.ErrPreparedStatementLimit)
	var myErr *mysql.MySQLError
	require.ErrorAs(t, last, &myErr, "the driver's error is kept")
	assert.EqualValues(t, 1461, myErr.Number)
	t.Logf("at the limit: %v", last)

	// Statements already prepared stay usable: the first tenant's
	// replays go on where their connection prepared them, and fail with
	// the same typed error where it had not.
	repo := repository.New(db, repository.InSchema("tenant_001"))
	succeeded := 0
	for _, w := range preparedCalls("tenant_001/0") {
		if err := w.call(d.ctx, repo); err != nil {
			require.ErrorIs(t, err, repository.ErrPreparedStatementLimit, "a replay of %s in the first tenant", w.name)
			continue
		}
		succeeded++
	}
	assert.Positive(t, succeeded, "the first tenant's replays of statements already prepared succeed")
}
