package citus_test

import (
	"testing"

	"github.com/agentpipeline/persistence/internal/contracttest"
	"github.com/agentpipeline/persistence/internal/dbtest"
)

// TestContractOnCitus runs the contract suite on a Citus coordinator with
// schema-based sharding, each test in a tenant schema of its own, which
// Citus makes a distributed schema on one worker. It is skipped under
// -short, as .ci/run's race-detector run passes: it is the longest of the
// package, and the plain PostgreSQL suite runs the same code under -race.
func TestContractOnCitus(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the contract suite on Citus under -short")
	}
	contracttest.Run(t, dbtest.Citus)
}
