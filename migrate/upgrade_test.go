package migrate_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

// tables are the pipeline's tables, parents first.
var tables = []string{"feature_runs", "sandboxes", "phase_results", "agent_invocations", "cta_events"}

// TestUpgrade starts from the schema of each earlier version, as that
// version's migrate.Up made it (the fixtures in testdata/upgrade, made by
// scripts/schema-sql.sh), fills it with rows of every table in every
// status, and upgrades it, on every database: with this version's Up, and
// with the versioned files of migrate/sql that follow that version's
// schema. The upgrade must lose and change no row, leave the new columns
// NULL, rewrite no table (on SQLite, rebuild none), and make the catalog a
// new database gets; replays of the old rows must behave as before, the
// old rows must take part in the new features, and Up must then send no
// DDL.
func TestUpgrade(t *testing.T) {
	versions, err := filepath.Glob(filepath.Join("testdata", "upgrade", "*"))
	require.NoError(t, err)
	require.NotEmpty(t, versions)
	slices.Sort(versions)
	for _, d := range dbtest.All() {
		// A database supported from a later version on has no fixture of
		// the versions before.
		var fixtures []string
		for _, dir := range versions {
			if f := filepath.Join(dir, d.Name+".sql"); fileExists(f) {
				fixtures = append(fixtures, f)
			}
		}
		files, err := filepath.Glob(filepath.Join("sql", d.Name, "*.up.sql"))
		require.NoError(t, err)
		slices.Sort(files)
		// PostgreSQL's then has the statements moved out of them for
		// Citus, one a file (internal/sqlsplit), which a database of any
		// version runs too.
		if d.Name == "postgres" {
			require.Greater(t, len(files), len(fixtures)+1, "the first version's schema, an upgrade from each version, then the statements split out")
		} else {
			require.Len(t, files, len(fixtures)+1, "the first version's schema, then an upgrade from each version")
		}
		for i, fixture := range fixtures {
			dir := filepath.Dir(fixture)
			t.Run(d.Name+"/from "+filepath.Base(dir)+"/by Up", func(t *testing.T) {
				t.Parallel()
				testUpgrade(t, d, fixture, func(db *gorm.DB) []string {
					rec := dbtest.RecorderOf(db)
					rec.Start()
					require.NoError(t, migrate.Up(t.Context(), db))
					stmts, _ := rec.Stop()
					return stmts
				})
			})
			// files[0] is the first version's schema; files[i+1] upgrades
			// version i to the next.
			t.Run(d.Name+"/from "+filepath.Base(dir)+"/by the SQL files", func(t *testing.T) {
				t.Parallel()
				testUpgrade(t, d, fixture, func(db *gorm.DB) []string {
					var stmts []string
					for _, f := range files[i+1:] {
						execFile(t, db, f)
						b, err := os.ReadFile(f)
						require.NoError(t, err)
						for s := range strings.SplitSeq(string(b), ";\n") {
							stmts = append(stmts, strings.TrimSpace(stripComments(s)))
						}
					}
					return stmts
				})
			})
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// stripComments drops the lines of s that are SQL comments.
func stripComments(s string) string {
	var kept []string
	for line := range strings.SplitSeq(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}

// testUpgrade fills the schema of fixture, upgrades it with upgrade, which
// returns the statements it sent, and checks the result.
func testUpgrade(t *testing.T, d dbtest.Database, fixture string, upgrade func(*gorm.DB) []string) {
	ctx := t.Context()
	fresh := d.Open(t)
	require.NoError(t, migrate.Up(ctx, fresh))
	want := dbtest.Catalog(t, fresh)

	db := d.Open(t)
	execFile(t, db, fixture)
	old := fill(t, db)
	before := allRows(t, db)
	oldColumns := columnsOf(before)
	storage := physical(t, db)

	var sent []string
	for _, s := range upgrade(db) {
		if ddl.MatchString(s) {
			sent = append(sent, s)
		}
	}
	require.NotEmpty(t, sent, "the fixture is of an older schema")
	for _, s := range sent {
		assert.NotRegexp(t, `(?i)^\s*(DROP|CREATE\s+TABLE)\b|\bRENAME\b|__temp`, s, "no table is dropped or rebuilt")
	}
	assert.Equal(t, storage, physical(t, db), "every table is where it was: none was rebuilt or rewritten")

	after := allRows(t, db)
	assert.Equal(t, before, only(after, oldColumns), "no row lost or changed")
	for table, rows := range after {
		for _, row := range rows {
			for col, v := range row {
				if !oldColumns[table][col] {
					assert.Nil(t, v, "%s %v: new column %s", table, row["id"], col)
				}
			}
		}
	}
	assert.Equal(t, want, dbtest.Catalog(t, db), "the upgraded schema is a new one's")
	upNoDDL(t, db)

	repo := repository.New(db)
	replays(t, ctx, repo, old)
	assert.Equal(t, after, allRows(t, db), "replays of the old rows change nothing")
	carryOn(t, ctx, db, repo, old)
}

// old names the rows fill wrote.
type old struct {
	running, completed, failed                           uuid.UUID // runs
	phaseRunning, phasePassed, phaseFailed               uuid.UUID
	invRunning, invCompleted, invFailed, invUnphased     uuid.UUID
	sandboxes                                            map[models.SandboxStatus]string
	ctaPending, ctaCompleted, ctaTimedOut, ctaNoDeadline string
	deadline                                             time.Time
}

// fill writes rows as the earlier version wrote them, with its columns
// only: every table, every status, NULLs and JSON. They are written with
// plain SQL, as the earlier version's code is not this one's.
func fill(t *testing.T, db *gorm.DB) old {
	t.Helper()
	at := time.Date(2025, 3, 4, 5, 6, 7, 891_000, time.UTC)
	o := old{
		running: uuid.New(), completed: uuid.New(), failed: uuid.New(),
		phaseRunning: uuid.New(), phasePassed: uuid.New(), phaseFailed: uuid.New(),
		invRunning: uuid.New(), invCompleted: uuid.New(), invFailed: uuid.New(), invUnphased: uuid.New(),
		sandboxes:  map[models.SandboxStatus]string{},
		ctaPending: "cta-pending", ctaCompleted: "cta-completed", ctaTimedOut: "cta-timed-out", ctaNoDeadline: "cta-no-deadline",
		deadline: at.Add(time.Hour),
	}
	exec := func(q string, args ...any) {
		t.Helper()
		require.NoError(t, db.Exec(q, args...).Error, q)
	}
	run := `INSERT INTO feature_runs (id, phase, status, memories, metadata, error, created_at, updated_at, completed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	exec(run, o.running.String(), "implement", "running", `["uses Go",{"k":1}]`, `{"event":"e1"}`, nil, at, at, nil)
	exec(run, o.completed.String(), "review", "completed", `[]`, nil, nil, at, at.Add(time.Minute), at.Add(time.Minute))
	exec(run, o.failed.String(), "plan", "failed", `["x"]`, nil, "out of budget", at, at.Add(time.Minute), at.Add(time.Minute))
	for i, s := range []models.SandboxStatus{models.SandboxCreating, models.SandboxRunning, models.SandboxPaused, models.SandboxStopped, models.SandboxFailed} {
		id := fmt.Sprintf("sbx-%d-%s", i, s)
		o.sandboxes[s] = id
		var started, stopped any
		if s != models.SandboxCreating {
			started = at
		}
		if s.Terminal() {
			stopped = at.Add(time.Minute)
		}
		exec(`INSERT INTO sandboxes (id, feature_run_id, status, provider, metadata, created_at, updated_at, started_at, stopped_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			id, o.running.String(), string(s), "e2b", `{"cpu":2}`, at, at, started, stopped)
	}
	phase := `INSERT INTO phase_results (id, feature_run_id, phase, status, output, error, created_at, updated_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	exec(phase, o.phaseRunning.String(), o.running.String(), "implement", "running", nil, nil, at, at, nil)
	exec(phase, o.phasePassed.String(), o.running.String(), "plan", "passed", `{"steps":3}`, nil, at, at, at)
	exec(phase, o.phaseFailed.String(), o.running.String(), "test", "failed", nil, "flaky", at, at, at)
	inv := `INSERT INTO agent_invocations (id, feature_run_id, phase_result_id, agent, model, status, input, steps, tool_calls, output, input_tokens, output_tokens, cost_nano_usd, error, created_at, updated_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	exec(inv, o.invRunning.String(), o.running.String(), o.phaseRunning.String(), "coder", "claude-sonnet-4", "running", `{"task":"t"}`, nil, nil, nil, 0, 0, 0, nil, at, at, nil)
	exec(inv, o.invCompleted.String(), o.running.String(), o.phasePassed.String(), "planner", "claude-opus-4", "completed", `{"task":"p"}`, `["s"]`, `[{"tool":"bash"}]`, `{"ok":true}`, 1800, 540, 67_500_000, nil, at, at, at)
	exec(inv, o.invFailed.String(), o.running.String(), o.phaseFailed.String(), "tester", "claude-haiku-4", "failed", nil, `[]`, `[]`, nil, 2600, 300, 3_280_000, "timed out", at, at, at)
	exec(inv, o.invUnphased.String(), o.completed.String(), nil, "triage", "", "completed", nil, `[]`, `[]`, `"done"`, 10, 20, 30, nil, at, at, at)
	cta := `INSERT INTO cta_events (id, feature_run_id, kind, status, request_data, response_data, expires_at, created_at, updated_at, resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	exec(cta, o.ctaPending, o.running.String(), "approval", "pending", `{"q":"ok?"}`, nil, o.deadline, at, at, nil)
	exec(cta, o.ctaCompleted, o.running.String(), "approval", "completed", `{"q":"ok?"}`, `{"yes":true}`, o.deadline, at, at, at)
	exec(cta, o.ctaTimedOut, o.running.String(), "clarification", "timed_out", nil, nil, at, at, at, at)
	exec(cta, o.ctaNoDeadline, o.failed.String(), "approval", "pending", nil, nil, nil, at, at, nil)
	return o
}

// replays repeats, on the old rows, calls whose outcome is decided by what
// the rows hold: replayed creates and transitions succeed and change
// nothing, refused transitions are refused, as they were before the
// upgrade.
func replays(t *testing.T, ctx context.Context, r *repository.Repository, o old) {
	t.Helper()
	result := repository.InvocationResult{InputTokens: 9, CacheReadInputTokens: 9, ResponseModel: "m", FinishReason: "stop", TimeToFirstTokenMicros: new(int64)}
	parent := o.invRunning
	for name, err := range map[string]error{
		"create run":             second(r.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: o.running, Phase: "other"})),
		"same phase":             r.UpdateFeatureRunPhase(ctx, o.running, "implement"),
		"memories present":       r.UpdateFeatureRunMemories(ctx, o.running, []any{map[string]any{"k": 1.0}, "uses Go"}),
		"complete completed run": r.CompleteFeatureRun(ctx, o.completed),
		"fail failed run":        r.FailFeatureRun(ctx, o.failed),
		"create sandbox":         r.CreateSandboxRecord(ctx, repository.NewSandbox{ID: o.sandboxes[models.SandboxRunning], FeatureRunID: o.running, Provider: "docker"}),
		"sandbox status":         r.UpdateSandboxStatus(ctx, o.sandboxes[models.SandboxPaused], models.SandboxPaused),
		"stop stopped sandbox":   r.UpdateSandboxStatus(ctx, o.sandboxes[models.SandboxStopped], models.SandboxStopped),
		"create phase":           second(r.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: o.phasePassed, FeatureRunID: o.running, Phase: "x"})),
		"pass passed phase":      r.PassPhaseResult(ctx, o.phasePassed, "other"),
		"fail failed phase":      r.FailPhaseResult(ctx, o.phaseFailed),
		"create invocation":      second(r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{ID: o.invCompleted, FeatureRunID: o.running, ParentInvocationID: &parent, Agent: "x", Provider: "openai"})),
		"complete completed":     r.CompleteAgentInvocation(ctx, o.invCompleted, result),
		"fail failed invocation": r.FailAgentInvocation(ctx, o.invFailed, result, "other"),
		"create CTA":             r.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: o.ctaCompleted, FeatureRunID: o.running}),
		"complete completed CTA": r.CompleteCTAEvent(ctx, o.ctaCompleted, "other"),
		"time out timed-out CTA": r.TimeoutCTAEvent(ctx, o.ctaTimedOut),
	} {
		assert.NoError(t, err, name)
	}
	for name, err := range map[string]error{
		"fail completed run":        r.FailFeatureRun(ctx, o.completed),
		"complete failed run":       r.CompleteFeatureRun(ctx, o.failed),
		"phase of completed run":    r.UpdateFeatureRunPhase(ctx, o.completed, "plan"),
		"restart stopped sandbox":   r.UpdateSandboxStatus(ctx, o.sandboxes[models.SandboxStopped], models.SandboxRunning),
		"fail passed phase":         r.FailPhaseResult(ctx, o.phasePassed),
		"fail completed invocation": r.FailAgentInvocation(ctx, o.invCompleted, result, "late"),
		"complete failed":           r.CompleteAgentInvocation(ctx, o.invFailed, result),
		"time out completed CTA":    r.TimeoutCTAEvent(ctx, o.ctaCompleted),
		"answer timed-out CTA":      r.CompleteCTAEvent(ctx, o.ctaTimedOut, "late"),
	} {
		assert.ErrorIs(t, err, repository.ErrInvalidTransition, name)
	}
}

func second[T any](_ T, err error) error { return err }

// carryOn moves the old rows on with this version: the running invocation
// completes with the new fields, old invocations get sub-agents (and a
// missing parent is refused), and the reads see old and new rows alike,
// the old rows' new columns as zero.
func carryOn(t *testing.T, ctx context.Context, db *gorm.DB, r *repository.Repository, o old) {
	t.Helper()
	full := repository.InvocationResult{InputTokens: 1000, OutputTokens: 100, CacheReadInputTokens: 600, CacheWriteInputTokens: 100,
		ReasoningOutputTokens: 40, CostNanoUSD: 5, ResponseModel: "claude-sonnet-4-20250514", ProviderRequestID: "msg_1", FinishReason: "end_turn"}
	require.NoError(t, r.CompleteAgentInvocation(ctx, o.invRunning, full))
	got, err := r.GetAgentInvocation(ctx, o.invRunning)
	require.NoError(t, err)
	assert.EqualValues(t, 600, got.CacheReadInputTokens)
	assert.Equal(t, "msg_1", got.ProviderRequestID)

	sub, err := r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: o.running, ParentInvocationID: &o.invCompleted, Agent: "researcher", Provider: "anthropic"})
	require.NoError(t, err, "an old invocation can be a parent")
	_, err = r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: o.running, ParentInvocationID: &o.invUnphased, Agent: "a"})
	require.ErrorIs(t, err, repository.ErrNotFound, "a parent of another run is refused on the upgraded schema")
	missing := uuid.New()
	_, err = r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: o.running, ParentInvocationID: &missing, Agent: "a"})
	require.ErrorIs(t, err, repository.ErrNotFound, "a missing parent is refused on the upgraded schema")

	tl, err := r.RunTimeline(ctx, o.running)
	require.NoError(t, err)
	var planner *repository.InvocationTimeline
	for i, p := range tl.Phases {
		for j := range p.Invocations {
			if p.Invocations[j].ID == o.invCompleted {
				planner = &tl.Phases[i].Invocations[j]
			}
		}
	}
	require.NotNil(t, planner)
	require.Len(t, planner.SubInvocations, 1)
	assert.Equal(t, sub, planner.SubInvocations[0].ID)

	u, err := r.RunUsage(ctx, o.running)
	require.NoError(t, err)
	assert.EqualValues(t, 4, u.Invocations)
	assert.EqualValues(t, 1000+1800+2600, u.InputTokens)
	assert.EqualValues(t, 600, u.CacheReadInputTokens, "the old rows' NULLs count as 0")
	assert.EqualValues(t, 40, u.ReasoningOutputTokens)
	require.Len(t, u.ByProvider, 2)
	assert.Equal(t, repository.UsageGroup{Key: "", UsageTotals: repository.UsageTotals{
		Invocations: 3, InputTokens: 1000 + 1800 + 2600, OutputTokens: 100 + 540 + 300, CacheReadInputTokens: 600, CacheWriteInputTokens: 100,
		ReasoningOutputTokens: 40, CostNanoUSD: 5 + 67_500_000 + 3_280_000,
	}}, u.ByProvider[0], "old rows are under no provider")

	expired, err := r.ExpireCTAEvents(ctx, o.deadline, 10)
	require.NoError(t, err)
	assert.Equal(t, []string{o.ctaPending}, expired)

	require.NoError(t, db.WithContext(ctx).Exec("DELETE FROM feature_runs WHERE id = ?", o.running.String()).Error)
	var left int64
	require.NoError(t, db.WithContext(ctx).Table("agent_invocations").Count(&left).Error)
	assert.EqualValues(t, 1, left, "deleting an old run deletes its old and new invocations")
}

// allRows returns every row of every table.
func allRows(t *testing.T, db *gorm.DB) map[string][]map[string]any {
	t.Helper()
	all := map[string][]map[string]any{}
	for _, table := range tables {
		all[table] = dbtest.Rows(t, db, table)
	}
	return all
}

// columnsOf returns the columns of each table's rows.
func columnsOf(all map[string][]map[string]any) map[string]map[string]bool {
	cols := map[string]map[string]bool{}
	for table, rows := range all {
		cols[table] = map[string]bool{}
		for _, row := range rows {
			for c := range row {
				cols[table][c] = true
			}
		}
	}
	return cols
}

// only returns the rows of all with only the columns of cols.
func only(all map[string][]map[string]any, cols map[string]map[string]bool) map[string][]map[string]any {
	out := map[string][]map[string]any{}
	for table, rows := range all {
		out[table] = []map[string]any{}
		for _, row := range rows {
			kept := map[string]any{}
			for c, v := range row {
				if cols[table][c] {
					kept[c] = v
				}
			}
			out[table] = append(out[table], kept)
		}
	}
	return out
}

// physical returns where each table's rows are stored: SQLite's root page,
// which a rebuilt table changes, PostgreSQL's relation and file node,
// which a table rewrite changes, or InnoDB's table ID and tablespace,
// which a table rebuild changes (an instant ADD COLUMN keeps both).
func physical(t *testing.T, db *gorm.DB) map[string]string {
	t.Helper()
	var rows []struct{ Name, Storage string }
	q := `SELECT name, CAST(rootpage AS TEXT) AS storage FROM sqlite_master WHERE type = 'table'`
	switch db.Dialector.Name() {
	case "postgres":
		q = `SELECT c.relname AS name, c.oid::text || '/' || c.relfilenode::text AS storage FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'`
	case "mysql":
		q = `SELECT SUBSTRING_INDEX(name, '/', -1) AS name, CONCAT(table_id, '/', space) AS storage
			FROM information_schema.innodb_sys_tables WHERE name LIKE CONCAT(DATABASE(), '/%')`
	}
	require.NoError(t, db.Raw(q).Scan(&rows).Error)
	m := map[string]string{}
	for _, r := range rows {
		m[r.Name] = r.Storage
	}
	require.Len(t, m, len(tables))
	return m
}

// TestUpRefusesToRebuildATable makes GORM want to rebuild an SQLite table:
// feature_runs.error made NOT NULL, where the model has it nullable, which
// GORM's SQLite migrator changes by rebuilding the table, whose drop would
// delete, by cascade, every row of every other table. Up must fail and
// leave every row.
func TestUpRefusesToRebuildATable(t *testing.T) {
	t.Parallel()
	db := dbtest.SQLite(t)
	b, err := os.ReadFile(filepath.Join("testdata", "upgrade", "v1", "sqlite.sql"))
	require.NoError(t, err)
	schema := strings.Replace(string(b), "`error` text,", "`error` text NOT NULL DEFAULT '',", 1)
	require.NotEqual(t, string(b), schema)
	require.NoError(t, db.Exec(schema).Error)
	run := uuid.NewString()
	at := time.Now().UTC()
	require.NoError(t, db.Exec(`INSERT INTO feature_runs (id, phase, status, memories, error, created_at, updated_at) VALUES (?, 'plan', 'running', '[]', '', ?, ?)`, run, at, at).Error)
	require.NoError(t, db.Exec(`INSERT INTO phase_results (id, feature_run_id, phase, status, created_at, updated_at) VALUES (?, ?, 'plan', 'running', ?, ?)`, uuid.NewString(), run, at, at).Error)
	before := allRows(t, db)

	err = migrate.Up(t.Context(), db)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rebuild a table")
	assert.Equal(t, before, allRows(t, db), "no row lost")
}

// TestUpOnPostgresReadsTheCatalogOnce checks Up's shortcut on PostgreSQL:
// on an up-to-date schema it reads pg_catalog once and sends no DDL, and a
// schema that lacks any one object (a table, a column, an index, a
// constraint), or has a column of another type, is not up to date: Up
// makes what is missing, or AutoMigrate changes the column back, and the
// catalog is a new database's again, but for the position of a column
// dropped and added again.
func TestUpOnPostgresReadsTheCatalogOnce(t *testing.T) {
	t.Parallel()
	db := dbtest.Postgres(t)
	ctx := t.Context()
	require.NoError(t, migrate.Up(ctx, db))
	position := regexp.MustCompile(` #\d+ `)
	catalog := func() []string {
		c := dbtest.Catalog(t, db)
		for i := range c {
			c[i] = position.ReplaceAllString(c[i], " ")
		}
		slices.Sort(c)
		return c
	}
	want := catalog()

	stmts := upNoDDL(t, db)
	assert.Len(t, stmts, 2, "the lock and the catalog read:\n%s", strings.Join(stmts, "\n"))
	for _, s := range stmts {
		assert.NotContains(t, s, "information_schema")
	}

	for _, drop := range []string{
		`DROP TABLE cta_events`,
		`ALTER TABLE feature_runs DROP COLUMN step`,
		`ALTER TABLE agent_invocations DROP COLUMN time_to_first_token_micros`,
		`DROP INDEX idx_sandboxes_live`,
		`DROP INDEX idx_agent_invocations_id_run CASCADE`, // and the parent key on it
		`ALTER TABLE sandboxes DROP CONSTRAINT fk_sandboxes_feature_run`,
		`ALTER TABLE feature_runs ALTER COLUMN phase TYPE varchar(200)`,
	} {
		require.NoError(t, db.Exec(drop).Error, drop)
		require.NotEqual(t, want, catalog(), drop)
		require.NoError(t, migrate.Up(ctx, db), "Up after %s", drop)
		assert.Equal(t, want, catalog(), "Up after %s", drop)
	}
}
