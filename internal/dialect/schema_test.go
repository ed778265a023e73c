package dialect_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/agentpipeline/persistence/internal/dialect"
)

func TestQualify(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"SELECT * FROM feature_runs WHERE id = ?", `SELECT * FROM "s".feature_runs WHERE id = ?`},
		{`INSERT INTO "cta_events" ("id") VALUES ($1)`, `INSERT INTO "s"."cta_events" ("id") VALUES ($1)`},
		{"INSERT INTO `sandboxes` (`id`)", "INSERT INTO \"s\".`sandboxes` (`id`)"},
		{"UPDATE phase_results SET status = $1", `UPDATE "s".phase_results SET status = $1`},
		{"SELECT FROM feature_runs AS r, generate_series(1, 2)", `SELECT FROM "s".feature_runs AS r, generate_series(1, 2)`},
		{"SELECT 1 FROM sandboxes\nJOIN feature_runs AS r ON r.id = s.feature_run_id", "SELECT 1 FROM \"s\".sandboxes\nJOIN \"s\".feature_runs AS r ON r.id = s.feature_run_id"},
		{"UPDATE JSON_TABLE(?) AS j STRAIGHT_JOIN cta_events AS e FORCE INDEX(PRIMARY)", `UPDATE JSON_TABLE(?) AS j STRAIGHT_JOIN "s".cta_events AS e FORCE INDEX(PRIMARY)`},
		{"SELECT * FROM (SELECT * FROM agent_invocations) AS x", `SELECT * FROM (SELECT * FROM "s".agent_invocations) AS x`},
		{"delete from agent_invocations where id = 1", `delete from "s".agent_invocations where id = 1`},
		// Not tables: columns, qualified columns, longer names, words.
		{"SELECT feature_run_id, feature_runs.memories FROM x WHERE k = 'sandboxes'", "SELECT feature_run_id, feature_runs.memories FROM x WHERE k = 'sandboxes'"},
		{"SELECT * FROM feature_runs_archive", "SELECT * FROM feature_runs_archive"},
		{"SELECT * FROM other.feature_runs", "SELECT * FROM other.feature_runs"},
	} {
		assert.Equal(t, c.want, dialect.Qualify(c.in, `"s"`), c.in)
	}
}
