package dbtest

import (
	"database/sql"
	"os"
	"sync"
	"testing"

	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dialect/postgres"
	"github.com/agentpipeline/persistence/internal/dialect/postgres/postgrestest"
)

// CitusEnvVar names the environment variable that holds the DSN of a
// Citus coordinator with schema-based sharding, as scripts/citus.sh
// starts one; the Citus tests run only where it is set.
const CitusEnvVar = "TEST_CITUS_DSN"

// citusSkipped makes a package's first test without Citus say so, and the
// others skip quietly.
var citusSkipped sync.Once

// Citus opens, on the Citus coordinator at TEST_CITUS_DSN, a pool whose
// connections use a schema of the test's own, which is the test's tenant
// schema (see TenantSchema): migrate.Up with migrate.InSchema makes it a
// distributed schema, placed whole on one worker. A test that asks
// Migrated for its database may get a schema migrated so, which another
// test was done with (see postgrestest.Migrated). Without TEST_CITUS_DSN
// the test is skipped, with one line for the first test of the package;
// under CI it fails.
func Citus(t testing.TB) *gorm.DB {
	t.Helper()
	return CitusWithParams(t, nil)
}

// CitusWithParams is Citus with params added to the DSN of every
// connection of the pool, such as an application_name by which a test
// finds its own backends.
func CitusWithParams(t testing.TB, params map[string]string) *gorm.DB {
	t.Helper()
	dsn := os.Getenv(CitusEnvVar)
	if dsn == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required when CI is set: scripts/citus.sh start prints it", CitusEnvVar)
		}
		citusSkipped.Do(func() {
			t.Logf("skipping the Citus tests: %s is unset (scripts/citus.sh start prints it)", CitusEnvVar)
		})
		t.SkipNow()
	}
	var sqlDB *sql.DB
	var schema string
	if _, ok := migratedFor.Load(t); ok && len(params) == 0 {
		sqlDB, schema = postgrestest.Migrated(t, dsn, func(sqlDB *sql.DB, schema string) error {
			return migrateUp(t, &postgres.Dialect, sqlDB, schema)
		})
	} else {
		sqlDB, schema = postgrestest.FreshSchema(t, dsn, params)
	}
	db := open(t, &postgres.Dialect, sqlDB)
	tenants.Store(db, schema)
	t.Cleanup(func() { tenants.Delete(db) })
	return db
}

// tenants maps each *gorm.DB opened by Citus to its tenant schema.
var tenants sync.Map

// TenantSchema returns the tenant schema a test must work in on db, with
// repository.InSchema and migrate.InSchema, or "" for db's default schema.
func TenantSchema(db *gorm.DB) string {
	s, _ := tenants.Load(db)
	name, _ := s.(string)
	return name
}
