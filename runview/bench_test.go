package runview_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
	"github.com/agentpipeline/persistence/runview"
)

// treeRun records a run of 5 phases and invocations three levels deep:
// top top-level invocations, each calling 4 sub-agents, each calling 5:
// 25×top invocations in all. It returns the run.
func treeRun(tb testing.TB, repo *repository.Repository, top int) uuid.UUID {
	tb.Helper()
	ctx := context.Background()
	var run uuid.UUID
	require.NoError(tb, repo.Transaction(ctx, func(tx *repository.Repository) error {
		var err error
		if run, err = tx.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "implement"}); err != nil {
			return err
		}
		var phases []uuid.UUID
		for p := range 5 {
			id, err := tx.CreatePhaseResult(ctx, repository.NewPhaseResult{FeatureRunID: run, Phase: fmt.Sprint("phase-", p)})
			if err != nil {
				return err
			}
			phases = append(phases, id)
		}
		invoke := func(phase, parent *uuid.UUID, agent string) (uuid.UUID, error) {
			id, err := tx.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: run, PhaseResultID: phase, ParentInvocationID: parent, Agent: agent, Model: "claude-sonnet-4", Provider: "anthropic", Input: map[string]any{"task": "a task of a few words"}})
			if err != nil {
				return id, err
			}
			return id, tx.CompleteAgentInvocation(ctx, id, repository.InvocationResult{Output: "an answer of a few words", InputTokens: 1200, OutputTokens: 300, CostNanoUSD: 4_500_000})
		}
		for i := range top {
			a, err := invoke(&phases[i%5], nil, "coder")
			if err != nil {
				return err
			}
			for range 4 {
				b, err := invoke(nil, &a, "researcher")
				if err != nil {
					return err
				}
				for range 5 {
					if _, err := invoke(nil, &b, "fetcher"); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}))
	return run
}

// statements serves path and returns the statements it sent.
func statements(tb testing.TB, db *gorm.DB, h http.Handler, path string) []string {
	tb.Helper()
	rec := dbtest.RecorderOf(db)
	rec.Start()
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest("GET", path, nil))
	stmts, _ := rec.Stop()
	require.Equal(tb, http.StatusOK, rr.Code)
	return stmts
}

// BenchmarkRunPage serves the page of a run of 1,000 agent invocations,
// three levels deep (40 top-level, each calling 4 sub-agents, each
// calling 5), on every database, and reports the statements it sends: the
// same number as for a run of 25 invocations, which the benchmark checks.
func BenchmarkRunPage(b *testing.B) {
	for _, d := range dbtest.All() {
		b.Run("db="+d.Name, func(b *testing.B) {
			db := d.Open(b)
			require.NoError(b, migrate.Up(b.Context(), db))
			repo := repository.New(db)
			small, big := treeRun(b, repo, 1), treeRun(b, repo, 40)
			h := runview.New(repo, runview.Options{})
			few := statements(b, db, h, "/runs/"+small.String())
			many := statements(b, db, h, "/runs/"+big.String())
			if len(few) != len(many) {
				b.Fatalf("%d statements for 25 invocations, %d for 1,000:\n%q", len(few), len(many), many)
			}
			path := "/runs/" + big.String()
			b.ReportAllocs()
			for b.Loop() {
				rr := httptest.NewRecorder()
				h.ServeHTTP(rr, httptest.NewRequest("GET", path, nil))
				if rr.Code != http.StatusOK {
					b.Fatal(rr.Code, rr.Body.String())
				}
				b.SetBytes(int64(rr.Body.Len()))
			}
			b.ReportMetric(float64(len(many)), "queries/op")
		})
	}
}

// listLoad fills a PostgreSQL schema with 100,000 runs in three phases
// and three statuses, and for the newest 1,000 runs 20 invocations and 3
// CTA events each, then vacuums and analyzes it, as autovacuum would.
var listLoad = []string{
	`INSERT INTO feature_runs (id, phase, status, memories, created_at, updated_at, completed_at)
	SELECT gen_random_uuid(), (ARRAY['plan','implement','review'])[1 + i % 3], (ARRAY['running','completed','failed'])[1 + (i / 3) % 3], '[]',
		now() - i * interval '1 second', now() - i * interval '1 second', CASE WHEN (i / 3) % 3 = 0 THEN NULL ELSE now() - i * interval '1 second' + interval '5 minutes' END
	FROM generate_series(1, 100000) AS i`,
	`CREATE TEMP TABLE sample AS SELECT id, created_at FROM feature_runs ORDER BY created_at DESC LIMIT 1000`,
	`INSERT INTO agent_invocations (id, feature_run_id, agent, model, status, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at)
	SELECT gen_random_uuid(), s.id, 'agent-' || (a % 4), 'model-' || (a % 2), 'completed', 1000, 200, 12345, s.created_at + a * interval '1 ms', s.created_at
	FROM sample AS s, generate_series(1, 20) AS a`,
	`INSERT INTO cta_events (id, feature_run_id, kind, status, expires_at, created_at, updated_at)
	SELECT s.id || '-' || k, s.id, 'approval', CASE WHEN k = 1 THEN 'pending' ELSE 'completed' END, s.created_at + interval '1 hour', s.created_at, s.created_at
	FROM sample AS s, generate_series(1, 3) AS k`,
	`VACUUM ANALYZE`,
}

// BenchmarkListPage serves the run list over 100,000 runs on PostgreSQL:
// its three reads alone (queries: the page of runs, the counts of the
// status tabs, and the usage and pending CTA events of the page), and the
// whole page (page). Each reports the median time of an operation
// (p50-ms) besides the mean.
func BenchmarkListPage(b *testing.B) {
	db := dbtest.Postgres(b)
	ctx := b.Context()
	require.NoError(b, migrate.Up(ctx, db))
	require.NoError(b, db.Connection(func(conn *gorm.DB) error {
		for _, q := range listLoad {
			if err := conn.Exec(q).Error; err != nil {
				return err
			}
		}
		return nil
	}))
	repo := repository.New(db)
	mid, err := repo.ListFeatureRuns(ctx, repository.RunFilter{}, repository.Page{Limit: 1000})
	require.NoError(b, err)
	for _, c := range []struct {
		name   string
		filter repository.RunFilter
		after  string
		query  string
	}{
		{"filter=none", repository.RunFilter{}, "", ""},
		{"filter=status", repository.RunFilter{Statuses: []models.RunStatus{models.RunFailed}}, "", "status=failed"},
		{"filter=phase", repository.RunFilter{Phase: "review"}, "", "phase=review"},
		{"filter=phase+status", repository.RunFilter{Phase: "review", Statuses: []models.RunStatus{models.RunRunning}}, "", "phase=review&status=running"},
		{"filter=none/page=21", repository.RunFilter{}, mid.Next, "after=" + mid.Next},
	} {
		b.Run(c.name+"/queries", func(b *testing.B) {
			var times []time.Duration
			for b.Loop() {
				start := time.Now()
				p, err := repo.ListFeatureRuns(ctx, c.filter, repository.Page{Limit: runview.DefaultPageSize, After: c.after})
				if err != nil {
					b.Fatal(err)
				}
				unfiltered := c.filter
				unfiltered.Statuses = nil
				if _, err := repo.CountFeatureRuns(ctx, unfiltered, runview.DefaultCountLimit); err != nil {
					b.Fatal(err)
				}
				ids := make([]uuid.UUID, len(p.Runs))
				for i, r := range p.Runs {
					ids[i] = r.ID
				}
				if _, err := repo.SummarizeRuns(ctx, ids); err != nil {
					b.Fatal(err)
				}
				times = append(times, time.Since(start))
			}
			reportMedian(b, times)
		})
		b.Run(c.name+"/page", func(b *testing.B) {
			h := runview.New(repo, runview.Options{})
			var times []time.Duration
			for b.Loop() {
				start := time.Now()
				rr := httptest.NewRecorder()
				h.ServeHTTP(rr, httptest.NewRequest("GET", "/?"+c.query, nil))
				if rr.Code != http.StatusOK {
					b.Fatal(rr.Code, rr.Body.String())
				}
				times = append(times, time.Since(start))
			}
			reportMedian(b, times)
		})
	}
}

// reportMedian reports the median of times in milliseconds.
func reportMedian(b *testing.B, times []time.Duration) {
	if len(times) == 0 {
		return
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2])/float64(time.Millisecond), "p50-ms")
}
