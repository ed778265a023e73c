package citus_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

var taskNode = regexp.MustCompile(`Node: host=\S+ port=(\d+)`)

// TestRoutedToOneWorker shows with EXPLAIN that a tenant's statements, which
// name its schema's tables, are each one task on the one worker that holds
// the schema, and that a list across two tenants' schemas is planned as a
// subplan per schema, merged on the coordinator.
func TestRoutedToOneWorker(t *testing.T) {
	ctx := t.Context()
	db := dbtest.Citus(t)
	schema := dbtest.TenantSchema(db)
	require.NoError(t, migrate.Up(ctx, db, migrate.InSchema(schema)))
	repo := repository.New(db, repository.InSchema(schema))
	run, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: repository.StableID("routing", schema), Phase: "plan"})
	require.NoError(t, err)

	var worker string
	require.NoError(t, db.Raw(`SELECT n.nodeport::text FROM pg_dist_partition p
		JOIN pg_dist_shard s USING (logicalrelid) JOIN pg_dist_placement USING (shardid) JOIN pg_dist_node n USING (groupid)
		WHERE p.logicalrelid = ?::regclass`, schema+".feature_runs").Scan(&worker).Error)
	require.NotEmpty(t, worker, "%s.feature_runs is placed on a worker", schema)

	explain := func(q string, args ...any) string {
		var lines []string
		require.NoError(t, db.Raw("EXPLAIN "+q, args...).Scan(&lines).Error, q)
		return strings.Join(lines, "\n")
	}
	table := fmt.Sprintf("%q.%q", schema, "feature_runs")
	for _, q := range []string{
		"SELECT * FROM " + table + " WHERE id = ?",
		"UPDATE " + table + " SET phase = 'x' WHERE id = ?",
		"SELECT * FROM " + table + " WHERE status = 'running' AND id <> ? ORDER BY created_at DESC, id DESC LIMIT 50",
	} {
		plan := explain(q, run)
		assert.Contains(t, plan, "Task Count: 1", "%s\n%s", q, plan)
		nodes := taskNode.FindAllStringSubmatch(plan, -1)
		if assert.Len(t, nodes, 1, "%s\n%s", q, plan) {
			assert.Equal(t, worker, nodes[0][1], "routed to the worker that holds %s", schema)
		}
	}

	other := dbtest.Citus(t)
	otherSchema := dbtest.TenantSchema(other)
	require.NoError(t, migrate.Up(ctx, other, migrate.InSchema(otherSchema)))
	plan := explain(fmt.Sprintf("SELECT * FROM %s UNION ALL SELECT * FROM %q.%q ORDER BY created_at LIMIT 50", table, otherSchema, "feature_runs"))
	assert.Equal(t, 2, strings.Count(plan, "Distributed Subplan"), "a subplan per tenant schema:\n%s", plan)
	assert.Contains(t, plan, "read_intermediate_result", "merged on the coordinator:\n%s", plan)
}
