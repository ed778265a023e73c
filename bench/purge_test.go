package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// purgeRuns is how many runs the purge benchmark stores before it purges.
const purgeRuns = 1_000_000

// purgeSeed stores purgeRuns runs on PostgreSQL, a second apart in 2026,
// completed a minute after their creation except every tenth, still
// running, and every tenth but one, failed; each with a phase result, an
// agent invocation in that phase, a stopped sandbox and a completed CTA
// event, and the first 100,000 with a sub-agent invocation too: 5.1
// million rows. It runs with session_replication_role = replica, on its
// connection alone, which skips the foreign keys' checks: the rows are
// consistent by construction, and a check per row made seeding take most
// of an hour on a shared machine.
var purgeSeed = []string{
	`INSERT INTO feature_runs (id, phase, status, memories, created_at, updated_at, completed_at)
	SELECT gen_random_uuid(), 'review', CASE i % 10 WHEN 0 THEN 'running' WHEN 1 THEN 'failed' ELSE 'completed' END, '["a fact"]',
		ts, ts, CASE WHEN i % 10 = 0 THEN NULL ELSE ts + interval '1 minute' END
	FROM (SELECT i, timestamptz '2026-01-01' + i * interval '1 second' AS ts FROM generate_series(1, $1) AS i) AS s`,
	`INSERT INTO phase_results (id, feature_run_id, phase, status, output, created_at, updated_at, finished_at)
	SELECT gen_random_uuid(), id, 'review', 'passed', '{"verdict":"ok"}', created_at, created_at, created_at FROM feature_runs`,
	`INSERT INTO agent_invocations (id, feature_run_id, phase_result_id, agent, model, status, input, output, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at)
	SELECT gen_random_uuid(), feature_run_id, id, 'reviewer', 'model', 'completed', '{"prompt":"review the change"}', '{"text":"looks good"}', 1000, 200, 12345, created_at, created_at
	FROM phase_results`,
	`INSERT INTO agent_invocations (id, feature_run_id, agent, model, status, input, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at, parent_invocation_id)
	SELECT gen_random_uuid(), feature_run_id, 'linter', 'model', 'completed', '{"prompt":"lint"}', 100, 20, 1234, created_at, created_at, id
	FROM agent_invocations WHERE created_at < timestamptz '2026-01-01' + interval '100000 seconds'`,
	`INSERT INTO sandboxes (id, feature_run_id, status, provider, created_at, updated_at, stopped_at)
	SELECT id || '-sbx', id, 'stopped', 'e2b', created_at, created_at, created_at FROM feature_runs`,
	`INSERT INTO cta_events (id, feature_run_id, kind, status, created_at, updated_at, resolved_at)
	SELECT id || '-cta', id, 'approval', 'completed', created_at, created_at, created_at FROM feature_runs`,
	`ANALYZE`,
}

// TestPurgeBenchmark measures PurgeFeatureRuns on PostgreSQL holding a
// million runs with their children: the runs purged per second by one
// purger, calls of 1,000 runs at a time; and the latency of a write
// workload on other runs (4 workers, each creating a run, a phase, an
// invocation, completing them, completing the run) without a purge, then
// while one runs. It seeds 5.1 million rows, so it runs only when
// BENCH_PURGE is set; scripts/bench.sh sets it with BENCH_PURGE=1.
// BENCH_PURGE_SECONDS sets how long each phase lasts (default 20), and
// BENCH_PURGE_RUNS how many runs to store (default a million).
func TestPurgeBenchmark(t *testing.T) {
	if os.Getenv("BENCH_PURGE") == "" {
		t.Skip("set BENCH_PURGE=1 to seed a million runs and measure PurgeFeatureRuns")
	}
	phase := 20 * time.Second
	if s, err := strconv.Atoi(os.Getenv("BENCH_PURGE_SECONDS")); err == nil && s > 0 {
		phase = time.Duration(s) * time.Second
	}
	db := dbtest.PostgresWithParams(t, map[string]string{"synchronous_commit": synchronousCommit()})
	sqlDB, err := db.DB()
	require.NoError(t, err)
	sqlDB.SetMaxOpenConns(poolSize)
	sqlDB.SetMaxIdleConns(poolSize)
	ctx := t.Context()
	require.NoError(t, migrate.Up(ctx, db))
	start := time.Now()
	runs := purgeRuns
	if n, err := strconv.Atoi(os.Getenv("BENCH_PURGE_RUNS")); err == nil && n > 0 {
		runs = n
	}
	require.NoError(t, db.WithContext(ctx).Connection(func(conn *gorm.DB) error {
		if err := conn.Exec("SET session_replication_role = replica").Error; err != nil {
			return err
		}
		for i, q := range purgeSeed {
			if i == 0 {
				q = strings.Replace(q, "$1", strconv.Itoa(runs), 1)
			}
			if err := conn.Exec(q).Error; err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
			t.Logf("seed statement %d done at %s", i+1, time.Since(start).Round(time.Second))
		}
		return conn.Exec("RESET session_replication_role").Error
	}))
	t.Logf("seeded %d runs with children in %s", runs, time.Since(start).Round(time.Second))
	var rows int64
	require.NoError(t, db.Raw(`SELECT (SELECT count(*) FROM feature_runs) + (SELECT count(*) FROM phase_results) + (SELECT count(*) FROM agent_invocations)
		+ (SELECT count(*) FROM sandboxes) + (SELECT count(*) FROM cta_events)`).Scan(&rows).Error)
	t.Logf("rows stored: %d", rows)

	repo := repository.New(db)
	cutoff := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

	base := writeWorkload(t, repo, phase, nil)
	report(t, "workload without purge", base)

	purged, purgeTime := 0, time.Duration(0)
	with := writeWorkload(t, repo, phase, func(ctx context.Context) {
		s := time.Now()
		for ctx.Err() == nil {
			n, err := repo.PurgeFeatureRuns(ctx, cutoff, 1000)
			if err != nil && ctx.Err() == nil {
				t.Errorf("purge: %v", err)
				return
			}
			purged += n
		}
		purgeTime = time.Since(s)
	})
	report(t, "workload with purge", with)
	t.Logf("RESULT purge during workload: %d runs in %s: %.0f runs/s", purged, purgeTime.Round(time.Millisecond), float64(purged)/purgeTime.Seconds())

	// Alone: one purger, then four.
	for _, purgers := range []int{1, 4} {
		var mu sync.Mutex
		n := 0
		pctx, cancel := context.WithTimeout(ctx, phase)
		s := time.Now()
		var wg sync.WaitGroup
		var calls []time.Duration
		for range purgers {
			wg.Go(func() {
				for pctx.Err() == nil {
					c := time.Now()
					k, err := repo.PurgeFeatureRuns(pctx, cutoff, 1000)
					if err != nil && pctx.Err() == nil {
						t.Errorf("purge: %v", err)
						return
					}
					mu.Lock()
					n += k
					if err == nil {
						calls = append(calls, time.Since(c))
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		cancel()
		elapsed := time.Since(s)
		t.Logf("RESULT purge alone, %d purger(s): %d runs in %s: %.0f runs/s; a call of 1,000 runs: %s", purgers, n, elapsed.Round(time.Millisecond),
			float64(n)/elapsed.Seconds(), quantiles(calls))
	}
	var left int64
	require.NoError(t, db.Raw(`SELECT count(*) FROM feature_runs`).Scan(&left).Error)
	t.Logf("runs left: %d", left)
}

// writeWorkload runs 4 workers writing runs for d, with background running
// beside them if set, and returns the latency of every write.
func writeWorkload(t *testing.T, repo *repository.Repository, d time.Duration, background func(context.Context)) []time.Duration {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	if background != nil {
		wg.Go(func() { background(ctx) })
	}
	for range 4 {
		wg.Go(func() {
			var mine []time.Duration
			timed := func(f func() error) bool {
				s := time.Now()
				err := f()
				if ctx.Err() != nil {
					return false
				}
				if err != nil {
					t.Errorf("write: %v", err)
					return false
				}
				mine = append(mine, time.Since(s))
				return true
			}
			for ctx.Err() == nil {
				run, phase, inv := uuid.New(), uuid.New(), uuid.New()
				_ = timed(func() error {
					_, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: run, Phase: "plan"})
					return err
				}) && timed(func() error {
					_, err := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: phase, FeatureRunID: run, Phase: "plan"})
					return err
				}) && timed(func() error {
					_, err := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{ID: inv, FeatureRunID: run, PhaseResultID: &phase, Agent: "coder", Input: map[string]any{"prompt": "write it"}})
					return err
				}) && timed(func() error {
					return repo.CompleteAgentInvocation(ctx, inv, repository.InvocationResult{Output: map[string]any{"text": "done"}, InputTokens: 1000, OutputTokens: 200})
				}) && timed(func() error { return repo.PassPhaseResult(ctx, phase, map[string]any{"ok": true}) }) &&
					timed(func() error { return repo.UpdateFeatureRunPhase(ctx, run, "review") }) &&
					timed(func() error { return repo.CompleteFeatureRun(ctx, run) })
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return lat
}

// report logs the writes' count and latency quantiles.
func report(t *testing.T, name string, lat []time.Duration) {
	t.Logf("RESULT %s: %d writes; latency %s", name, len(lat), quantiles(lat))
}

// quantiles formats the median, p99 and maximum of lat.
func quantiles(lat []time.Duration) string {
	if len(lat) == 0 {
		return "none"
	}
	lat = slices.Clone(lat)
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return fmt.Sprintf("p50 %s, p99 %s, max %s", q(0.50).Round(time.Microsecond), q(0.99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
}
