package mariadb_test

import (
	"testing"

	"github.com/agentpipeline/persistence/internal/dbtest"
)

// TestMain runs more tests side by side than go test's default, as they
// mostly wait for the database servers; see dbtest.Parallel.
func TestMain(m *testing.M) { dbtest.Main(m) }
