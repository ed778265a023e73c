package contracttest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/dialects"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/persistencetest"
	"github.com/agentpipeline/persistence/repository"
)

// tables are the package's five tables.
var tables = []string{"feature_runs", "sandboxes", "phase_results", "agent_invocations", "cta_events"}

// Tenants tests repository.InSchema and migrate.InSchema: a tenant's
// Repository works on its schema's tables alone, whatever schema the
// pool's connections use by default.
func Tenants(t *testing.T, open dbtest.Opener) {
	t.Run("BadNames", func(t *testing.T) {
		e := setup(t, open)
		before := e.snapshot()
		names := []string{"", "Tenant", "a-b", "1a", "a b", `a"b`, "a;drop", "a.b", strings.Repeat("a", 64), "information_schema"}
		switch e.db.Dialector.Name() {
		case "sqlite":
			names = append(names, "tenant_a")
		case "postgres":
			names = append(names, "pg_catalog", "pg_tenant")
		default:
			names = append(names, "mysql", "performance_schema", "sys")
		}
		for _, name := range names {
			err := migrate.Up(e.ctx, e.db, migrate.InSchema(name))
			require.ErrorIs(t, err, migrate.ErrInvalidInput, "Up in schema %q", name)
			repo := repository.New(e.db, repository.InSchema(name))
			_, err = repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{Phase: "plan"})
			require.ErrorIs(t, err, repository.ErrInvalidInput, "a write in schema %q", name)
			var input *repository.InputError
			require.ErrorAs(t, err, &input)
			assert.Equal(t, "schema", input.Field)
			_, err = repo.ListFeatureRuns(e.ctx, repository.RunFilter{}, repository.Page{})
			require.ErrorIs(t, err, repository.ErrInvalidInput, "a read in schema %q", name)
		}
		assert.Equal(t, before, e.snapshot(), "nothing written")
	})

	t.Run("Isolated", func(t *testing.T) {
		e := setup(t, open)
		if e.db.Dialector.Name() == "sqlite" {
			t.Skip("SQLite has no schemas: BadNames shows it refuses them")
		}
		a, b := e.tenant("a"), e.tenant("b")
		// The pool's default schema has tables of its own, which neither
		// tenant may touch.
		defaultBefore := e.snapshot()
		bBefore := persistencetest.TakeSnapshot(t, e.db, persistencetest.Exact(), persistencetest.InSchema(b.name)).String()

		ids := tenantWorkload(t, e, a.repo)
		for _, table := range tables {
			var n int64
			require.NoError(t, e.db.WithContext(e.ctx).Table(a.name+"."+table).Count(&n).Error)
			assert.NotZero(t, n, "tenant a's %s has its rows", table)
		}
		assert.Equal(t, defaultBefore, e.snapshot(), "the pool's default schema is untouched")
		assert.Equal(t, bBefore, persistencetest.TakeSnapshot(t, e.db, persistencetest.Exact(), persistencetest.InSchema(b.name)).String(), "tenant b is untouched")

		// Tenant b sees none of a's rows.
		_, err := b.repo.GetFeatureRun(e.ctx, ids.run)
		require.ErrorIs(t, err, repository.ErrNotFound)
		_, err = b.repo.GetSandbox(e.ctx, ids.sandbox)
		require.ErrorIs(t, err, repository.ErrNotFound)
		_, err = b.repo.GetPhaseResult(e.ctx, ids.phase)
		require.ErrorIs(t, err, repository.ErrNotFound)
		_, err = b.repo.GetAgentInvocation(e.ctx, ids.invocation)
		require.ErrorIs(t, err, repository.ErrNotFound)
		_, err = b.repo.GetCTAEvent(e.ctx, ids.cta)
		require.ErrorIs(t, err, repository.ErrNotFound)
		_, err = b.repo.RunTimeline(e.ctx, ids.run)
		require.ErrorIs(t, err, repository.ErrNotFound)
		_, err = b.repo.RunOutline(e.ctx, ids.run)
		require.ErrorIs(t, err, repository.ErrNotFound)
		page, err := b.repo.ListFeatureRuns(e.ctx, repository.RunFilter{}, repository.Page{})
		require.NoError(t, err)
		assert.Empty(t, page.Runs)
		page, err = b.repo.ListFeatureRuns(e.ctx, repository.RunFilter{Phase: "review"}, repository.Page{})
		require.NoError(t, err)
		assert.Empty(t, page.Runs)
		counts, err := b.repo.CountFeatureRuns(e.ctx, repository.RunFilter{}, 10)
		require.NoError(t, err)
		for _, c := range counts {
			assert.Zero(t, c.Count, "tenant b counts none of a's runs")
		}
		ctas, err := b.repo.ListCTAEvents(e.ctx, repository.CTAFilter{}, repository.Page{})
		require.NoError(t, err)
		assert.Empty(t, ctas.Events)
		leaked, err := b.repo.LeakedSandboxes(e.ctx, time.Nanosecond)
		require.NoError(t, err)
		assert.Empty(t, leaked)
		summaries, err := b.repo.SummarizeRuns(e.ctx, []uuid.UUID{ids.run})
		require.NoError(t, err)
		assert.Empty(t, summaries)
		expired, err := b.repo.ExpireCTAEvents(e.ctx, time.Now().Add(time.Hour), 10)
		require.NoError(t, err)
		assert.Empty(t, expired)
		// Writes of b naming a's rows find nothing, and a child of a's
		// run has no parent in b.
		require.ErrorIs(t, b.repo.UpdateFeatureRunPhase(e.ctx, ids.run, "ship"), repository.ErrNotFound)
		require.ErrorIs(t, b.repo.UpdateSandboxStatus(e.ctx, ids.sandbox, models.SandboxStopped), repository.ErrNotFound)
		require.ErrorIs(t, b.repo.PassPhaseResult(e.ctx, ids.phase, nil), repository.ErrNotFound)
		_, err = b.repo.CreatePhaseResult(e.ctx, repository.NewPhaseResult{FeatureRunID: ids.run, Phase: "plan"})
		require.ErrorIs(t, err, repository.ErrNotFound)
		assert.Equal(t, bBefore, persistencetest.TakeSnapshot(t, e.db, persistencetest.Exact(), persistencetest.InSchema(b.name)).String(), "tenant b is still untouched")

		// Purges: b's finds nothing of a's; a's purges a's finished run
		// and keeps the one whose sandbox still runs.
		done, err := a.repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{Phase: "plan"})
		require.NoError(t, err)
		require.NoError(t, a.repo.CompleteFeatureRun(e.ctx, done))
		later := time.Now().Add(time.Hour)
		n, err := b.repo.PurgeFeatureRuns(e.ctx, later, 10)
		require.NoError(t, err)
		assert.Zero(t, n, "tenant b purges none of a's runs")
		n, err = a.repo.PurgeFeatureRuns(e.ctx, later, 10)
		require.NoError(t, err)
		assert.Equal(t, 1, n, "tenant a purges its finished run")
		_, err = a.repo.GetFeatureRun(e.ctx, done)
		require.ErrorIs(t, err, repository.ErrNotFound)
		_, err = a.repo.GetFeatureRun(e.ctx, ids.run)
		require.NoError(t, err, "the run whose sandbox still runs stays")
		assert.Equal(t, defaultBefore, e.snapshot(), "the pool's default schema is still untouched")

		// One ID in two tenants is two rows.
		id, err := b.repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{ID: ids.run, Phase: "plan"})
		require.NoError(t, err)
		assert.Equal(t, ids.run, id)
		run, err := b.repo.GetFeatureRun(e.ctx, ids.run)
		require.NoError(t, err)
		assert.Equal(t, models.RunRunning, run.Status, "b's run is its own")
		run, err = a.repo.GetFeatureRun(e.ctx, ids.run)
		require.NoError(t, err)
		assert.Equal(t, models.RunCompleted, run.Status, "a's run is unchanged")
	})

	// With no tables in the pool's default schema, a statement that
	// named a table without the tenant's schema would fail.
	t.Run("NoDefaultTables", func(t *testing.T) {
		t.Parallel()
		db := open(t)
		if db.Dialector.Name() == "sqlite" {
			t.Skip("SQLite has no schemas: BadNames shows it refuses them")
		}
		e := &env{t: t, ctx: t.Context(), db: db}
		tenantWorkload(t, e, e.tenant("c").repo)
	})

	t.Run("ParallelUps", func(t *testing.T) {
		e := setup(t, open)
		if e.db.Dialector.Name() == "sqlite" {
			t.Skip("SQLite has no schemas: BadNames shows it refuses them")
		}
		names := []string{e.schemaName("p"), e.schemaName("q"), e.schemaName("r")}
		for _, name := range names {
			e.dropSchemaAtEnd(name)
		}
		// Each tenant migrated by three processes at once: they take
		// turns per schema, and every one succeeds.
		errs := dbtest.Concurrently(3*len(names), func(i int) error {
			return migrate.Up(e.ctx, e.db, migrate.InSchema(names[i%len(names)]))
		})
		for _, err := range errs {
			require.NoError(t, err)
		}
		for _, name := range names {
			repo := repository.New(e.db, repository.InSchema(name))
			_, err := repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{Phase: "plan"})
			require.NoError(t, err, "schema %s", name)
		}
		// A second Up of a schema changes nothing.
		rec := dbtest.RecorderOf(e.db)
		rec.Start()
		require.NoError(t, migrate.Up(e.ctx, e.db, migrate.InSchema(names[0])))
		stmts, _ := rec.Stop()
		for _, s := range stmts {
			assert.NotRegexp(t, ddl, s, "a second Up changes no schema")
		}
	})
}

// tenant is a tenant schema of a test, migrated, and its Repository.
type tenant struct {
	name string
	repo *repository.Repository
}

// schemaName returns a schema name of e's test, which no other test uses.
func (e *env) schemaName(suffix string) string {
	return fmt.Sprintf("t%s_%s", strings.ReplaceAll(uuid.NewString()[:13], "-", ""), suffix)
}

// tenant makes a migrated tenant schema for e's test, dropped at its end.
func (e *env) tenant(suffix string) tenant {
	e.t.Helper()
	name := e.schemaName(suffix)
	e.dropSchemaAtEnd(name)
	require.NoError(e.t, migrate.Up(e.ctx, e.db, migrate.InSchema(name)))
	return tenant{name: name, repo: repository.New(e.db, repository.InSchema(name))}
}

// dropSchemaAtEnd drops the schema name, with its tables, when e's test
// ends.
func (e *env) dropSchemaAtEnd(name string) {
	db := e.db
	d, err := dialects.Of(db)
	require.NoError(e.t, err)
	e.t.Cleanup(func() {
		if err := db.Exec(fmt.Sprintf(d.Schemas.Drop, db.Statement.Quote(name))).Error; err != nil {
			e.t.Errorf("drop schema %s: %v", name, err)
		}
	})
}

// tenantIDs are the rows tenantWorkload made.
type tenantIDs struct {
	run, phase, invocation uuid.UUID
	sandbox, cta           string
}

// tenantWorkload calls every write of repo, and every read, on one run it
// creates and completes, and checks that each read finds what the writes
// made.
func tenantWorkload(t *testing.T, e *env, repo *repository.Repository) tenantIDs {
	t.Helper()
	ctx := e.ctx
	var ids tenantIDs
	var err error
	ids.run, err = repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan", Memories: []any{"m0"}})
	require.NoError(t, err)
	require.NoError(t, repo.AtStep(2).UpdateFeatureRunPhase(ctx, ids.run, "review"))
	require.NoError(t, repo.UpdateFeatureRunMemories(ctx, ids.run, []any{"m1"}))
	ids.sandbox = "sbx-" + uuid.NewString()
	require.NoError(t, repo.CreateSandboxRecord(ctx, repository.NewSandbox{ID: ids.sandbox, FeatureRunID: ids.run}))
	require.NoError(t, repo.AtStep(3).UpdateSandboxStatus(ctx, ids.sandbox, models.SandboxRunning))
	ids.phase, err = repo.CreatePhaseResult(ctx, repository.NewPhaseResult{FeatureRunID: ids.run, Phase: "review"})
	require.NoError(t, err)
	ids.invocation, err = repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: ids.run, PhaseResultID: &ids.phase, Agent: "coder"})
	require.NoError(t, err)
	sub, err := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: ids.run, ParentInvocationID: &ids.invocation, Agent: "sub"})
	require.NoError(t, err)
	require.NoError(t, repo.FailAgentInvocation(ctx, sub, repository.InvocationResult{}, "sub failed"))
	require.NoError(t, repo.CompleteAgentInvocation(ctx, ids.invocation, repository.InvocationResult{InputTokens: 10, OutputTokens: 5}))
	require.NoError(t, repo.PassPhaseResult(ctx, ids.phase, map[string]any{"ok": true}))
	failed, err := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{FeatureRunID: ids.run, Phase: "test"})
	require.NoError(t, err)
	require.NoError(t, repo.FailPhaseResultWithError(ctx, failed, "red"))
	ids.cta = "cta-" + uuid.NewString()
	require.NoError(t, repo.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: ids.cta, FeatureRunID: ids.run, Kind: "approve"}))
	require.NoError(t, repo.CompleteCTAEvent(ctx, ids.cta, map[string]any{"approved": true}))
	due := "cta-" + uuid.NewString()
	require.NoError(t, repo.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: due, FeatureRunID: ids.run, Kind: "approve", ExpiresAt: time.Now().Add(-time.Minute)}))
	expired, err := repo.ExpireCTAEvents(ctx, time.Now(), 10)
	require.NoError(t, err)
	assert.Equal(t, []string{due}, expired)
	timedOut := "cta-" + uuid.NewString()
	require.NoError(t, repo.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: timedOut, FeatureRunID: ids.run, Kind: "approve"}))
	require.NoError(t, repo.TimeoutCTAEvent(ctx, timedOut))

	// Reads, in a transaction too.
	require.NoError(t, repo.Transaction(ctx, func(tx *repository.Repository) error {
		run, err := tx.GetFeatureRun(ctx, ids.run)
		if err != nil {
			return err
		}
		assert.Equal(t, "review", run.Phase)
		_, err = tx.GetSandbox(ctx, ids.sandbox)
		return err
	}))
	_, err = repo.GetPhaseResult(ctx, ids.phase)
	require.NoError(t, err)
	_, err = repo.GetAgentInvocation(ctx, ids.invocation)
	require.NoError(t, err)
	_, err = repo.GetCTAEvent(ctx, ids.cta)
	require.NoError(t, err)
	tl, err := repo.RunTimeline(ctx, ids.run)
	require.NoError(t, err)
	assert.Len(t, tl.Sandboxes, 1)
	assert.Len(t, tl.CTAEvents, 3)
	_, err = repo.RunOutline(ctx, ids.run)
	require.NoError(t, err)
	usage, err := repo.RunUsage(ctx, ids.run)
	require.NoError(t, err)
	assert.EqualValues(t, 10, usage.InputTokens)
	page, err := repo.ListFeatureRuns(ctx, repository.RunFilter{Phase: "review"}, repository.Page{})
	require.NoError(t, err)
	assert.Len(t, page.Runs, 1)
	ctas, err := repo.ListCTAEvents(ctx, repository.CTAFilter{Status: models.CTATimedOut}, repository.Page{})
	require.NoError(t, err)
	assert.Len(t, ctas.Events, 2)
	summaries, err := repo.SummarizeRuns(ctx, []uuid.UUID{ids.run})
	require.NoError(t, err)
	assert.Len(t, summaries, 1)
	leaked, err := repo.LeakedSandboxes(ctx, time.Hour)
	require.NoError(t, err)
	assert.Empty(t, leaked, "the run is running")

	require.NoError(t, repo.CompleteFeatureRun(ctx, ids.run))
	leaked, err = repo.LeakedSandboxes(ctx, time.Hour)
	require.NoError(t, err)
	assert.Len(t, leaked, 1, "its sandbox outlived it")
	counts, err := repo.CountFeatureRuns(ctx, repository.RunFilter{}, 10)
	require.NoError(t, err)
	var n int64
	for _, c := range counts {
		n += c.Count
	}
	assert.EqualValues(t, 1, n)
	return ids
}
