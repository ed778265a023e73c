package persistence_test

import (
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"github.com/agentpipeline/persistence/internal/contracttest"
	"github.com/agentpipeline/persistence/internal/dbtest"
)

// TestContract runs the repository contract suite on every supported
// database: an in-memory SQLite and a real PostgreSQL.
func TestContract(t *testing.T) {
	for _, db := range dbtest.All() {
		t.Run(db.Name, func(t *testing.T) { contracttest.Run(t, db.Open) })
	}
}
