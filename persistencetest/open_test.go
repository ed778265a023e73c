package persistencetest_test

import (
	"database/sql"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/persistencetest"
)

// tables returns the tables db holds.
func tables(t *testing.T, db *gorm.DB) []string {
	t.Helper()
	names, err := db.Migrator().GetTables()
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestOpen(t *testing.T) {
	t.Parallel()
	var sqlDB *sql.DB
	t.Run("test", func(t *testing.T) {
		a, b := persistencetest.Open(t), persistencetest.Open(t)
		if n := len(tables(t, a)); n != 5 {
			t.Fatalf("%d tables, want the five, migrated", n)
		}
		fill(t, a, time.Now())
		if n := persistencetest.TakeSnapshot(t, b).Rows(); n != 0 {
			t.Fatalf("a second database holds %d rows of the first", n)
		}
		var err error
		if sqlDB, err = a.DB(); err != nil {
			t.Fatal(err)
		}
	})
	if sqlDB == nil {
		t.Fatal("the test that opens the database did not get as far as its pool")
	}
	if err := sqlDB.Ping(); err == nil {
		t.Error("the database is open after its test ended")
	}
}

func TestOpenPostgres(t *testing.T) {
	t.Parallel()
	admin := dbtest.PostgresServer(t) // skips, or fails under CI, without a server
	var schema string
	t.Run("test", func(t *testing.T) {
		db := persistencetest.OpenPostgres(t, dbtest.PostgresDSN())
		if n := len(tables(t, db)); n != 5 {
			t.Fatalf("%d tables, want the five, migrated", n)
		}
		if err := db.Raw("SELECT current_schema()").Scan(&schema).Error; err != nil {
			t.Fatal(err)
		}
		fill(t, db, time.Now())
	})
	var n int
	if err := admin.QueryRowContext(t.Context(), "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", schema).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if schema == "" || n != 0 {
		t.Errorf("schema %q is left on the server after its test", schema)
	}
}
