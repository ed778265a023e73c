package citus_test

import (
	"testing"

	"github.com/agentpipeline/persistence/internal/contracttest"
	"github.com/agentpipeline/persistence/internal/dbtest"
)

// TestContractOnCitus runs the contract suite on a Citus coordinator with
// schema-based sharding, each test in a tenant schema of its own, which
// Citus makes a distributed schema on one worker.
func TestContractOnCitus(t *testing.T) {
	contracttest.Run(t, dbtest.Citus)
}
