package bench

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/agentpipeline/persistence/internal/workload"
)

// rowsOfRun returns, as JSON text in creation order, the rows of each table
// that the feature run of key wrote, without what differs between two runs
// of the same seed: IDs derived from the key (a sub-agent's parent is told
// by its input instead), and the times of the writes (only whether each
// was set is kept).
const rowsOfRun = `
WITH r AS (SELECT * FROM feature_runs WHERE id = $1)
SELECT 'feature_runs', jsonb_agg(to_jsonb(r) - '{id,created_at,updated_at,completed_at}'::text[]
		|| jsonb_build_object('completed', r.completed_at IS NOT NULL))
	FROM r
UNION ALL
SELECT 'sandboxes', jsonb_agg(to_jsonb(s) - '{id,feature_run_id,created_at,updated_at,started_at,stopped_at}'::text[]
		|| jsonb_build_object('started', s.started_at IS NOT NULL, 'stopped', s.stopped_at IS NOT NULL)
		ORDER BY s.created_at)
	FROM sandboxes s WHERE s.feature_run_id = $1
UNION ALL
SELECT 'phase_results', jsonb_agg(to_jsonb(p) - '{id,feature_run_id,created_at,updated_at,finished_at}'::text[]
		|| jsonb_build_object('finished', p.finished_at IS NOT NULL)
		ORDER BY p.created_at)
	FROM phase_results p WHERE p.feature_run_id = $1
UNION ALL
SELECT 'agent_invocations', jsonb_agg(to_jsonb(a) - '{id,feature_run_id,phase_result_id,parent_invocation_id,created_at,updated_at,finished_at}'::text[]
		|| jsonb_build_object('in_phase', a.phase_result_id IS NOT NULL, 'finished', a.finished_at IS NOT NULL,
			'parent_input', (SELECT p.input FROM agent_invocations p WHERE p.id = a.parent_invocation_id))
		ORDER BY a.created_at)
	FROM agent_invocations a WHERE a.feature_run_id = $1
UNION ALL
SELECT 'cta_events', jsonb_agg(to_jsonb(c) - '{id,feature_run_id,created_at,updated_at,resolved_at}'::text[]
		|| jsonb_build_object('resolved', c.resolved_at IS NOT NULL)
		ORDER BY c.created_at)
	FROM cta_events c WHERE c.feature_run_id = $1`

// TestBaselineWritesLikeRepository checks that the comparison is fair: the
// baseline, driven by the same workload, passes the same step checks, in
// order and replayed, and leaves the same rows behind. The naive side is
// held to the step checks only, not to the rows: it stores what a plain
// GORM port stores (see naiveStore), and TestNaiveOutcomesLikeRepository
// compares its outcomes call by call.
func TestBaselineWritesLikeRepository(t *testing.T) {
	if testing.Short() {
		t.Skip("creates a database of its own")
	}
	e := setup(t)
	ctx := t.Context()
	tables := make(map[string]map[string]string)
	for _, impl := range impls {
		st, _ := e.store(impl)
		key := "equivalence/" + randomHex(8)
		steps := workload.Generate(42, key)
		for _, mode := range []workload.Mode{workload.InOrder, workload.Replay} {
			for _, step := range steps {
				if err := workload.Exec(ctx, st, step, mode); err != nil {
					t.Fatalf("%s: %v", impl, err)
				}
			}
		}
		if impl == implNaive {
			continue
		}
		rows, _ := e.pool.Query(ctx, rowsOfRun, workload.RunID(key))
		written, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Table, Rows string }])
		if err != nil {
			t.Fatalf("%s: read rows: %v", impl, err)
		}
		tables[impl] = make(map[string]string)
		for _, w := range written {
			tables[impl][w.Table] = w.Rows
		}
	}
	for table, want := range tables[implRepository] {
		if got := tables[implPGX][table]; got != want {
			t.Errorf("%s differ:\nrepository: %s\npgx:        %s", table, want, got)
		}
	}
}
