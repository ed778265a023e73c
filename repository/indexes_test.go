package repository_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// loadScale fills a PostgreSQL schema with 100,000 runs, and for every
// hundredth one 5 phases, 20 invocations, 2 sandboxes and 3 CTA events,
// with set-based INSERTs that take seconds.
func loadScale(t testing.TB, db *gorm.DB) {
	t.Helper()
	for _, q := range []string{
		`INSERT INTO feature_runs (id, phase, status, memories, created_at, updated_at, completed_at)
		SELECT gen_random_uuid(), 'review', (ARRAY['running','completed','failed'])[1 + i % 3], '[]',
			now() - i * interval '1 second', now() - i * interval '1 second', NULL
		FROM generate_series(1, 100000) AS i`,
		`CREATE TEMP TABLE sample AS SELECT id, created_at FROM feature_runs ORDER BY created_at LIMIT 1000`,
		`INSERT INTO phase_results (id, feature_run_id, phase, status, created_at, updated_at)
		SELECT gen_random_uuid(), s.id, 'phase-' || p, 'passed', s.created_at + p * interval '1 ms', s.created_at
		FROM sample AS s, generate_series(1, 5) AS p`,
		`INSERT INTO agent_invocations (id, feature_run_id, agent, model, status, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at)
		SELECT gen_random_uuid(), s.id, 'agent-' || (a % 4), 'model-' || (a % 2), 'completed', 1000, 200, 12345, s.created_at + a * interval '1 ms', s.created_at
		FROM sample AS s, generate_series(1, 20) AS a`,
		`INSERT INTO sandboxes (id, feature_run_id, status, provider, created_at, updated_at)
		SELECT s.id || '-' || k, s.id, CASE WHEN random() < 0.05 THEN 'running' ELSE 'stopped' END, 'e2b', s.created_at, s.created_at
		FROM sample AS s, generate_series(1, 2) AS k`,
		`INSERT INTO cta_events (id, feature_run_id, kind, status, expires_at, created_at, updated_at)
		SELECT s.id || '-' || k, s.id, 'approval', CASE WHEN k = 1 THEN 'pending' ELSE 'completed' END,
			s.created_at + interval '1 hour', s.created_at, s.created_at
		FROM sample AS s, generate_series(1, 3) AS k`,
		`ANALYZE`,
	} {
		require.NoError(t, db.Exec(q).Error, q)
	}
}

var bigTables = regexp.MustCompile(`Seq Scan on (feature_runs|phase_results|agent_invocations|sandboxes|cta_events)\b`)

// TestReadsUseIndexes checks with EXPLAIN that each read of the reads issue
// uses an index on a PostgreSQL holding 100,000 runs.
func TestReadsUseIndexes(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the 100,000-run load in -short mode")
	}
	db := dbtest.Postgres(t)
	ctx := t.Context()
	require.NoError(t, migrate.Up(ctx, db))
	start := time.Now()
	loadScale(t, db)
	t.Logf("loaded 100,000 runs with children in %s", time.Since(start).Round(time.Millisecond))

	var sampled models.FeatureRun
	require.NoError(t, db.Table("feature_runs").Order("created_at").First(&sampled).Error)
	var cursorRun models.FeatureRun
	require.NoError(t, db.Table("feature_runs").Order("created_at DESC").Offset(500).First(&cursorRun).Error)
	repo := repository.New(db)
	rec := dbtest.RecorderOf(db)

	reads := map[string]func() error{
		"RunTimeline": func() error { _, err := repo.RunTimeline(ctx, sampled.ID); return err },
		"RunUsage":    func() error { _, err := repo.RunUsage(ctx, sampled.ID); return err },
		"ListFeatureRuns": func() error {
			p, err := repo.ListFeatureRuns(ctx, repository.RunFilter{}, repository.Page{Limit: 20})
			if err == nil {
				_, err = repo.ListFeatureRuns(ctx, repository.RunFilter{}, repository.Page{Limit: 20, After: p.Next})
			}
			return err
		},
		"ListFeatureRuns by status": func() error {
			_, err := repo.ListFeatureRuns(ctx, repository.RunFilter{Statuses: []models.RunStatus{models.RunFailed}, CreatedBefore: cursorRun.CreatedAt}, repository.Page{Limit: 20})
			return err
		},
		"ExpireCTAEvents": func() error {
			_, err := repo.ExpireCTAEvents(ctx, time.Now().Add(-99990*time.Second), 10)
			return err
		},
		"LeakedSandboxes": func() error { _, err := repo.LeakedSandboxes(ctx, time.Hour); return err },
	}
	for name, read := range reads {
		rec.Start()
		require.NoError(t, read(), name)
		stmts, _ := rec.Stop()
		require.NotEmpty(t, stmts, name)
		for _, stmt := range stmts {
			if !strings.Contains(stmt, "_") {
				continue // BEGIN and friends
			}
			var plan []string
			require.NoError(t, db.WithContext(context.Background()).Raw("EXPLAIN "+stmt).Scan(&plan).Error, stmt)
			text := strings.Join(plan, "\n")
			if bigTables.MatchString(text) {
				t.Errorf("%s scans a big table sequentially:\n%s\n%s", name, stmt, text)
			}
		}
	}
}
