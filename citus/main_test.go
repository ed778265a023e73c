package citus_test

import (
	"testing"

	"github.com/agentpipeline/persistence/internal/dbtest"
)

// TestMain runs dbtest.Parallel tests at once unless -test.parallel says
// otherwise: each test waits mostly on the coordinator, which routes its
// statements to a worker.
func TestMain(m *testing.M) { dbtest.Main(m) }
