package postgrestest_test

import (
	"testing"

	"github.com/agentpipeline/persistence/internal/dbtest"
)

// TestMain drops the spare schemas the tests leave and vacuums the
// catalog after the schemas they dropped; see dbtest.Main.
func TestMain(m *testing.M) { dbtest.Main(m) }
