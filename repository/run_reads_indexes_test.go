package repository_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// runListLoads fill a database of each kind with 100,000 runs, in three
// phases and three statuses, a second apart; for the oldest 1,000, 5
// phases, 20 agent invocations and 2 sandboxes each; and for the oldest
// 10,000, 3 CTA events each: one pending with a deadline, one pending
// without, one completed. Each is a few set-based statements.
var runListLoads = map[string][]string{
	"postgres": {
		`INSERT INTO feature_runs (id, phase, status, memories, created_at, updated_at)
		SELECT gen_random_uuid(), (ARRAY['plan','implement','review'])[1 + i % 3], (ARRAY['running','completed','failed'])[1 + (i / 3) % 3], '[]',
			now() - i * interval '1 second', now() - i * interval '1 second'
		FROM generate_series(1, 100000) AS i`,
		`CREATE TEMP TABLE sample AS SELECT id, created_at FROM feature_runs ORDER BY created_at LIMIT 10000`,
		`INSERT INTO phase_results (id, feature_run_id, phase, status, created_at, updated_at)
		SELECT gen_random_uuid(), s.id, 'phase-' || p, 'passed', s.created_at + p * interval '1 ms', s.created_at
		FROM (SELECT * FROM sample ORDER BY created_at LIMIT 1000) AS s, generate_series(1, 5) AS p`,
		`INSERT INTO agent_invocations (id, feature_run_id, agent, model, status, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at)
		SELECT gen_random_uuid(), s.id, 'agent-' || (a % 4), 'model-' || (a % 2), 'completed', 1000, 200, 12345, s.created_at + a * interval '1 ms', s.created_at
		FROM (SELECT * FROM sample ORDER BY created_at LIMIT 1000) AS s, generate_series(1, 20) AS a`,
		`INSERT INTO sandboxes (id, feature_run_id, status, provider, created_at, updated_at)
		SELECT s.id || '-' || k, s.id, 'stopped', 'e2b', s.created_at, s.created_at
		FROM (SELECT * FROM sample ORDER BY created_at LIMIT 1000) AS s, generate_series(1, 2) AS k`,
		`INSERT INTO cta_events (id, feature_run_id, kind, status, expires_at, created_at, updated_at)
		SELECT s.id || '-' || k, s.id, 'approval', CASE WHEN k = 3 THEN 'completed' ELSE 'pending' END,
			CASE WHEN k = 2 THEN NULL ELSE s.created_at + interval '1 hour' END, s.created_at, s.created_at
		FROM sample AS s, generate_series(1, 3) AS k`,
		`ANALYZE`,
	},
	// Times are written as the SQLite driver writes them, without
	// trailing zeros, so that the keyset reads, which compare the stored
	// text with the driver's, page them as the package's own rows.
	"sqlite": {
		`WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < 100000)
		INSERT INTO feature_runs (id, phase, status, memories, created_at, updated_at)
		SELECT printf('%08x-0000-4000-8000-000000000000', i), CASE i % 3 WHEN 0 THEN 'plan' WHEN 1 THEN 'implement' ELSE 'review' END,
			CASE (i / 3) % 3 WHEN 0 THEN 'running' WHEN 1 THEN 'completed' ELSE 'failed' END, '[]',
			rtrim(rtrim(strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || i || ' seconds'), '0'), '.') || '+00:00', rtrim(rtrim(strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || i || ' seconds'), '0'), '.') || '+00:00'
		FROM seq`,
		`CREATE TEMP TABLE sample AS SELECT id, created_at FROM feature_runs ORDER BY created_at LIMIT 10000`,
		`WITH RECURSIVE p(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM p WHERE n < 5)
		INSERT INTO phase_results (id, feature_run_id, phase, status, created_at, updated_at)
		SELECT substr(s.id, 1, 9) || printf('%04x', n) || substr(s.id, 14), s.id, 'phase-' || n, 'passed', s.created_at, s.created_at
		FROM (SELECT * FROM sample ORDER BY created_at LIMIT 1000) AS s, p`,
		`WITH RECURSIVE a(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM a WHERE n < 20)
		INSERT INTO agent_invocations (id, feature_run_id, agent, model, status, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at)
		SELECT substr(s.id, 1, 9) || printf('%04x', n) || substr(s.id, 14), s.id, 'agent-' || (n % 4), 'model-' || (n % 2), 'completed', 1000, 200, 12345, s.created_at, s.created_at
		FROM (SELECT * FROM sample ORDER BY created_at LIMIT 1000) AS s, a`,
		`WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 2)
		INSERT INTO sandboxes (id, feature_run_id, status, provider, created_at, updated_at)
		SELECT s.id || '-' || n, s.id, 'stopped', 'e2b', s.created_at, s.created_at
		FROM (SELECT * FROM sample ORDER BY created_at LIMIT 1000) AS s, k`,
		`WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 3)
		INSERT INTO cta_events (id, feature_run_id, kind, status, expires_at, created_at, updated_at)
		SELECT s.id || '-' || n, s.id, 'approval', CASE WHEN n = 3 THEN 'completed' ELSE 'pending' END,
			CASE WHEN n = 2 THEN NULL ELSE s.created_at END, s.created_at, s.created_at
		FROM sample AS s, k`,
		`ANALYZE`,
	},
	"mariadb": {
		`INSERT INTO feature_runs (id, phase, status, memories, created_at, updated_at)
		SELECT UUID(), ELT(1 + seq % 3, 'plan', 'implement', 'review'), ELT(1 + (seq DIV 3) % 3, 'running', 'completed', 'failed'), '[]',
			UTC_TIMESTAMP(6) - INTERVAL seq SECOND, UTC_TIMESTAMP(6) - INTERVAL seq SECOND
		FROM seq_1_to_100000`,
		`CREATE TEMPORARY TABLE sample AS SELECT id, created_at FROM feature_runs ORDER BY created_at LIMIT 10000`,
		`CREATE TEMPORARY TABLE sample1000 AS SELECT id, created_at FROM sample ORDER BY created_at LIMIT 1000`,
		`INSERT INTO phase_results (id, feature_run_id, phase, status, created_at, updated_at)
		SELECT UUID(), s.id, CONCAT('phase-', p.seq), 'passed', s.created_at + INTERVAL p.seq MICROSECOND, s.created_at
		FROM sample1000 AS s, seq_1_to_5 AS p`,
		`INSERT INTO agent_invocations (id, feature_run_id, agent, model, status, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at)
		SELECT UUID(), s.id, CONCAT('agent-', a.seq % 4), CONCAT('model-', a.seq % 2), 'completed', 1000, 200, 12345, s.created_at + INTERVAL a.seq MICROSECOND, s.created_at
		FROM sample1000 AS s, seq_1_to_20 AS a`,
		`INSERT INTO sandboxes (id, feature_run_id, status, provider, created_at, updated_at)
		SELECT CONCAT(s.id, '-', k.seq), s.id, 'stopped', 'e2b', s.created_at, s.created_at
		FROM sample1000 AS s, seq_1_to_2 AS k`,
		`INSERT INTO cta_events (id, feature_run_id, kind, status, expires_at, created_at, updated_at)
		SELECT CONCAT(s.id, '-', k.seq), s.id, 'approval', IF(k.seq = 3, 'completed', 'pending'),
			IF(k.seq = 2, NULL, s.created_at + INTERVAL 1 HOUR), s.created_at, s.created_at
		FROM sample AS s, seq_1_to_3 AS k`,
		`ANALYZE TABLE feature_runs, phase_results, agent_invocations, sandboxes, cta_events`,
	},
}

var fullScan = map[string]*regexp.Regexp{
	// PostgreSQL's plan names a sequential scan.
	"postgres": bigTables,
	// SQLite's query plan says SCAN for a full scan of a table, and
	// SCAN … USING INDEX for a walk along an index, which a LIMIT stops.
	"sqlite": regexp.MustCompile(`(?m)\bSCAN (feature_runs|phase_results|agent_invocations|sandboxes|cta_events)\s*$`),
	// MariaDB's EXPLAIN says type ALL for a full scan; explain below
	// writes its rows as "table type key".
	"mariadb": regexp.MustCompile(`(?m)^(feature_runs|phase_results|agent_invocations|sandboxes|cta_events) ALL\b`),
}

// explain returns the plan of stmt on db as text.
func explain(t *testing.T, db *gorm.DB, name, stmt string) string {
	t.Helper()
	db = db.WithContext(context.Background())
	switch name {
	case "postgres":
		var plan []string
		require.NoError(t, db.Raw("EXPLAIN "+stmt).Scan(&plan).Error, stmt)
		return strings.Join(plan, "\n")
	case "sqlite":
		var plan []struct{ Detail string }
		require.NoError(t, db.Raw("EXPLAIN QUERY PLAN "+stmt).Scan(&plan).Error, stmt)
		var lines []string
		for _, p := range plan {
			lines = append(lines, p.Detail)
		}
		return strings.Join(lines, "\n")
	default:
		var plan []struct {
			Table string
			Type  string
			Key   *string
			Rows  *int64
			Extra *string
		}
		require.NoError(t, db.Raw("EXPLAIN "+stmt).Scan(&plan).Error, stmt)
		var lines []string
		for _, p := range plan {
			lines = append(lines, fmt.Sprintf("%s %s %s rows=%d %s", p.Table, p.Type, deref(p.Key), deref(p.Rows), deref(p.Extra)))
		}
		return strings.Join(lines, "\n")
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// TestRunListReadsUseIndexes checks with EXPLAIN, on a database of each
// kind holding 100,000 runs, that none of the reads behind a run viewer
// (the phase filter of ListFeatureRuns, CountFeatureRuns, SummarizeRuns,
// ListCTAEvents and RunOutline) scans a table whole: each walks an index.
func TestRunListReadsUseIndexes(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the 100,000-run loads in -short mode")
	}
	for _, d := range dbtest.All() {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			db, ctx := openForLoads(t, d)
			start := time.Now()
			load(t, db, d.Name, runListLoads[d.Name])
			t.Logf("loaded 100,000 runs with children in %s", time.Since(start).Round(time.Millisecond))

			var sample []uuid.UUID
			require.NoError(t, db.Raw("SELECT id FROM feature_runs ORDER BY created_at LIMIT 50").Scan(&sample).Error)
			require.Len(t, sample, 50)
			var mid models.FeatureRun
			require.NoError(t, db.Table("feature_runs").Order("created_at DESC").Offset(50_000).First(&mid).Error)

			repo := repository.New(db)
			rec := dbtest.RecorderOf(db)
			reads := map[string]func() error{
				"ListFeatureRuns by phase": func() error {
					p, err := repo.ListFeatureRuns(ctx, repository.RunFilter{Phase: "implement"}, repository.Page{Limit: 50})
					if err == nil && len(p.Runs) != 50 {
						err = fmt.Errorf("%d runs", len(p.Runs))
					}
					if err == nil {
						_, err = repo.ListFeatureRuns(ctx, repository.RunFilter{Phase: "implement"}, repository.Page{Limit: 50, After: p.Next})
					}
					return err
				},
				"ListFeatureRuns by phase and status": func() error {
					_, err := repo.ListFeatureRuns(ctx, repository.RunFilter{Phase: "plan", Statuses: []models.RunStatus{models.RunFailed}, CreatedBefore: mid.CreatedAt}, repository.Page{Limit: 50})
					return err
				},
				"CountFeatureRuns": func() error {
					c, err := repo.CountFeatureRuns(ctx, repository.RunFilter{}, 1000)
					if err == nil && (len(c) != 3 || !c[0].More) {
						err = fmt.Errorf("counts %+v", c)
					}
					return err
				},
				"CountFeatureRuns by phase and time": func() error {
					_, err := repo.CountFeatureRuns(ctx, repository.RunFilter{Phase: "review", CreatedFrom: mid.CreatedAt.Add(-time.Hour), CreatedBefore: mid.CreatedAt}, 0)
					return err
				},
				"SummarizeRuns": func() error {
					s, err := repo.SummarizeRuns(ctx, sample)
					if err == nil && (len(s) != 50 || s[sample[0]].Usage.Invocations != 20 || s[sample[0]].PendingCTAEvents != 2) {
						err = fmt.Errorf("summaries %+v", s[sample[0]])
					}
					return err
				},
				"ListCTAEvents": func() error {
					// Every page, into the events without a deadline.
					page, n := repository.Page{Limit: 1000}, 0
					for {
						p, err := repo.ListCTAEvents(ctx, repository.CTAFilter{}, page)
						if err != nil {
							return err
						}
						n += len(p.Events)
						if p.Next == "" {
							break
						}
						page.After = p.Next
					}
					if n != 20_000 {
						return fmt.Errorf("%d pending events", n)
					}
					return nil
				},
				"ListCTAEvents completed": func() error {
					_, err := repo.ListCTAEvents(ctx, repository.CTAFilter{Status: models.CTACompleted}, repository.Page{Limit: 20})
					return err
				},
				"RunOutline": func() error { _, err := repo.RunOutline(ctx, sample[0]); return err },
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
					plan := explain(t, db, d.Name, stmt)
					assert.NotRegexp(t, fullScan[d.Name], plan, "%s scans a table whole:\n%s", name, stmt)
					if testing.Verbose() {
						t.Logf("%s:\n%s\n%s", name, stmt, plan)
					}
				}
			}
		})
	}
}

// openForLoads opens a fresh, migrated database of d for a test that
// loads 100,000 runs into it.
func openForLoads(t *testing.T, d dbtest.Database) (*gorm.DB, context.Context) {
	t.Helper()
	db := d.Open(t)
	if d.Name == "sqlite" {
		// The load's temporary table and the repository share the one
		// connection of an in-memory database.
		sqlDB, err := db.DB()
		require.NoError(t, err)
		sqlDB.SetMaxOpenConns(1)
	}
	ctx := t.Context()
	require.NoError(t, migrate.Up(ctx, db))
	return db, ctx
}

// foreignKeyChecks are the session settings that turn a connection's
// foreign key checks off and on again, on each database. A load builds
// its children from the runs it inserted, so checking each child's
// parent would only cost time: on PostgreSQL, 40% of the purge test's
// load.
var foreignKeyChecks = map[string][2]string{
	"postgres": {"SET session_replication_role = replica", "RESET session_replication_role"},
	"mariadb":  {"SET foreign_key_checks = 0", "SET foreign_key_checks = 1"},
	"sqlite":   {"PRAGMA foreign_keys = OFF", "PRAGMA foreign_keys = ON"},
}

// load runs the statements of a load on one connection of db, a database
// of kind name, with its foreign key checks off, and turns them on again
// before the connection goes back to the pool.
func load(t *testing.T, db *gorm.DB, name string, statements []string) {
	t.Helper()
	checks := foreignKeyChecks[name]
	require.NoError(t, db.Connection(func(conn *gorm.DB) (err error) {
		if err := conn.Exec(checks[0]).Error; err != nil {
			return err
		}
		defer func() { err = errors.Join(err, conn.Exec(checks[1]).Error) }()
		for _, q := range statements {
			if err := conn.Exec(q).Error; err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	}))
}
