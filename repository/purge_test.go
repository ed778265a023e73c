package repository_test

import (
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/dialect"
	"github.com/agentpipeline/persistence/repository"
)

// purgeLoads make runListLoads' runs purgeable: the finished ones get a
// completion time, and no CTA event is pending, so that the oldest runs
// purged have children of every kind. They give every run a phase result,
// an agent invocation, a stopped sandbox and a completed CTA event, so
// that the statistics see children spread over all runs, as in a database
// where every run has some, rather than over the oldest 1,000 alone.
var purgeLoads = map[string][]string{
	"postgres": {
		`INSERT INTO phase_results (id, feature_run_id, phase, status, created_at, updated_at)
		SELECT gen_random_uuid(), id, 'plan', 'passed', created_at, created_at FROM feature_runs`,
		`INSERT INTO agent_invocations (id, feature_run_id, agent, model, status, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at)
		SELECT gen_random_uuid(), id, 'agent', 'model', 'completed', 1, 1, 1, created_at, created_at FROM feature_runs`,
		`INSERT INTO sandboxes (id, feature_run_id, status, provider, created_at, updated_at)
		SELECT id || '-all', id, 'stopped', 'e2b', created_at, created_at FROM feature_runs`,
		`INSERT INTO cta_events (id, feature_run_id, kind, status, created_at, updated_at)
		SELECT id || '-all', id, 'approval', 'completed', created_at, created_at FROM feature_runs`,
	},
	"sqlite": {
		`INSERT INTO phase_results (id, feature_run_id, phase, status, created_at, updated_at)
		SELECT substr(id, 1, 9) || 'ffff' || substr(id, 14), id, 'plan', 'passed', created_at, created_at FROM feature_runs`,
		`INSERT INTO agent_invocations (id, feature_run_id, agent, model, status, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at)
		SELECT substr(id, 1, 9) || 'ffff' || substr(id, 14), id, 'agent', 'model', 'completed', 1, 1, 1, created_at, created_at FROM feature_runs`,
		`INSERT INTO sandboxes (id, feature_run_id, status, provider, created_at, updated_at)
		SELECT id || '-all', id, 'stopped', 'e2b', created_at, created_at FROM feature_runs`,
		`INSERT INTO cta_events (id, feature_run_id, kind, status, created_at, updated_at)
		SELECT id || '-all', id, 'approval', 'completed', created_at, created_at FROM feature_runs`,
	},
	"mariadb": {
		`INSERT INTO phase_results (id, feature_run_id, phase, status, created_at, updated_at)
		SELECT UUID(), id, 'plan', 'passed', created_at, created_at FROM feature_runs`,
		`INSERT INTO agent_invocations (id, feature_run_id, agent, model, status, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at)
		SELECT UUID(), id, 'agent', 'model', 'completed', 1, 1, 1, created_at, created_at FROM feature_runs`,
		`INSERT INTO sandboxes (id, feature_run_id, status, provider, created_at, updated_at)
		SELECT CONCAT(id, '-all'), id, 'stopped', 'e2b', created_at, created_at FROM feature_runs`,
		`INSERT INTO cta_events (id, feature_run_id, kind, status, created_at, updated_at)
		SELECT CONCAT(id, '-all'), id, 'approval', 'completed', created_at, created_at FROM feature_runs`,
	},
}

// purgeable makes the finished runs of the load purgeable.
var purgeable = []string{
	`UPDATE feature_runs SET completed_at = created_at WHERE status <> 'running'`,
	`UPDATE cta_events SET status = 'timed_out' WHERE status = 'pending'`,
}

// explainArgs returns the plan of stmt with args on db, as explain
// writes it.
func explainArgs(t *testing.T, db *gorm.DB, name, stmt string, args []any) string {
	t.Helper()
	sqlDB, err := db.DB()
	require.NoError(t, err)
	prefix := "EXPLAIN "
	if name == "sqlite" {
		prefix = "EXPLAIN QUERY PLAN "
	}
	rows, err := sqlDB.QueryContext(t.Context(), prefix+stmt, args...)
	require.NoError(t, err, stmt)
	defer rows.Close()
	cols, err := rows.Columns()
	require.NoError(t, err)
	var lines []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		col := func(name string) string { return vals[slices.Index(cols, name)].String }
		switch name {
		case "postgres":
			lines = append(lines, vals[0].String)
		case "sqlite":
			lines = append(lines, col("detail"))
		default:
			lines = append(lines, fmt.Sprintf("%s %s %s rows=%s %s", col("table"), col("type"), col("key"), col("rows"), col("Extra")))
		}
	}
	require.NoError(t, rows.Err())
	return strings.Join(lines, "\n")
}

// TestPurgeUsesIndexes checks with EXPLAIN, on a database of each kind
// holding 100,000 runs, that no statement of PurgeFeatureRuns scans a
// table whole: the claim walks the index on (status, created_at, id) and
// each delete finds its rows by the run's ID.
func TestPurgeUsesIndexes(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the 100,000-run loads in -short mode")
	}
	for _, d := range dbtest.All() {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			db, ctx := openForLoads(t, d)
			loads := runListLoads[d.Name]
			analyze := loads[len(loads)-1]
			loads = append(append(append(loads[:len(loads)-1:len(loads)-1], purgeLoads[d.Name]...), purgeable...), analyze)
			load(t, db, d.Name, loads)
			var runs, invocations int64
			require.NoError(t, db.Table("feature_runs").Count(&runs).Error)
			require.NoError(t, db.Table("agent_invocations").Count(&invocations).Error)

			repo := repository.New(db)
			cutoff := time.Now().Add(time.Hour)
			n, err := repo.PurgeFeatureRuns(ctx, cutoff, 150)
			require.NoError(t, err)
			assert.Equal(t, 150, n)
			var left, invocationsLeft int64
			require.NoError(t, db.Table("feature_runs").Count(&left).Error)
			assert.Equal(t, runs-150, left)
			require.NoError(t, db.Table("agent_invocations").Count(&invocationsLeft).Error)
			assert.Greater(t, invocations-invocationsLeft, int64(150), "the runs purged had many invocations")

			// The statements as the Repository sends them, with the IDs
			// of the runs next in line.
			var ids []string
			require.NoError(t, db.Raw("SELECT id FROM feature_runs WHERE status <> 'running' ORDER BY status, created_at, id LIMIT ?", dialect.PurgeRuns).Scan(&ids).Error)
			require.Len(t, ids, dialect.PurgeRuns)
			withIDs := func(first any) []any {
				vars := []any{first}
				for _, id := range ids {
					vars = append(vars, id)
				}
				return vars
			}
			p := d.Dialect.Purge
			stmts := map[string]struct {
				st   *dialect.Statement
				vars []any
			}{
				"claim": {p.Claim, []any{cutoff.UTC(), dialect.PurgeRuns}},
				"runs":  {p.Runs, withIDs(cutoff.UTC())},
			}
			if p.Lock != nil {
				stmts["lock"] = struct {
					st   *dialect.Statement
					vars []any
				}{p.Lock, withIDs(nil)[1:]}
			}
			for i, st := range p.Children {
				stmts[dialect.PurgeChildTables[i]] = struct {
					st   *dialect.Statement
					vars []any
				}{st, withIDs(repository.PurgeChildRows)}
			}
			for name, s := range stmts {
				plan := explainArgs(t, db, d.Name, s.st.SQL, s.st.Args(s.vars))
				assert.NotRegexp(t, fullScan[d.Name], plan, "%s scans a table whole:\n%s", name, s.st.SQL)
				if testing.Verbose() {
					t.Logf("%s:\n%s", name, plan)
				}
			}
		})
	}
}
