package persistence_test

import (
	"testing"

	"github.com/go-sql-driver/mysql"
	_ "github.com/mattn/go-sqlite3"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/contracttest"
	"github.com/agentpipeline/persistence/internal/dbtest"
)

// TestContract runs the repository contract suite on every supported
// database: an in-memory SQLite, a real PostgreSQL and a real MariaDB.
//
// The databases run side by side, each test on a database or schema of
// its own: one after another, they took the sum of their times.
func TestContract(t *testing.T) {
	t.Parallel()
	for _, db := range dbtest.All() {
		t.Run(db.Name, func(t *testing.T) {
			t.Parallel()
			db.Reach(t)
			contracttest.Run(t, db.Open)
		})
	}
}

// TestContractOnMariaDBWithClientFoundRows runs the contract suite on
// MariaDB connections that report the rows a statement matched, not those
// it changed (clientFoundRows=true): a replayed create's ON DUPLICATE KEY
// UPDATE then counts one row, and so would an update that matched a row
// already as asked. The repository accepts the setting, so every answer
// must be the same.
func TestContractOnMariaDBWithClientFoundRows(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping under -short: MariaDB's contract runs once, with its default setting")
	}
	t.Parallel()
	dbtest.MariaDBServer(t) // skips once, not once per test, without a server
	contracttest.Run(t, func(t testing.TB) *gorm.DB {
		return dbtest.MariaDBWith(t, func(c *mysql.Config) { c.ClientFoundRows = true })
	})
}

// TestMain runs more tests side by side than go test's default, as they
// mostly wait for the database servers; see dbtest.Parallel.
func TestMain(m *testing.M) { dbtest.Main(m) }
