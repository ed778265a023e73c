// Package contracttest is the contract suite of package repository: one set
// of tests, run against every supported database by the module's root
// repository_test.go. Each test gets a fresh, migrated database.
package contracttest

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/persistencetest"
	"github.com/agentpipeline/persistence/repository"
)

// Run runs the whole contract against the databases open returns.
func Run(t *testing.T, open dbtest.Opener) {
	for _, group := range []struct {
		name string
		run  func(*testing.T, dbtest.Opener)
	}{
		{"FeatureRuns", FeatureRuns},
		{"Memories", Memories},
		{"Sandboxes", Sandboxes},
		{"PhaseResults", PhaseResults},
		{"AgentInvocations", AgentInvocations},
		{"SubAgents", SubAgents},
		{"CTAEvents", CTAEvents},
		{"BadInput", BadInput},
		{"Edges", Edges},
		{"Statements", Statements},
		{"Migrate", Migrate},
		{"Transaction", Transaction},
		{"Getters", Getters},
		{"Timeline", Timeline},
		{"Usage", Usage},
		{"ListRuns", ListRuns},
		{"ExpireCTAs", ExpireCTAs},
		{"LeakedSandboxes", LeakedSandboxes},
		{"Races", Races},
		{"Linearizable", Linearizable},
		{"Fencing", Fencing},
		{"Tenants", Tenants},
		{"Times", Times},
		{"StoredJSON", StoredJSON},
		{"Purge", Purge},
	} {
		t.Run(group.name, func(t *testing.T) { group.run(t, open) })
	}
}

// env is one test's database and repository.
type env struct {
	t    *testing.T
	ctx  context.Context
	db   *gorm.DB
	repo *repository.Repository
}

// setup opens a database of t's own, migrates it and marks t parallel.
// The database may be one another test left as migrated, emptied (see
// dbtest.Migrated): every test starts from migrated, empty tables.
func setup(t *testing.T, open dbtest.Opener) *env {
	t.Helper()
	t.Parallel()
	db := dbtest.Migrated(t, open)
	ctx := t.Context()
	if schema := dbtest.TenantSchema(db); schema != "" {
		require.NoError(t, migrate.Up(ctx, db, migrate.InSchema(schema)))
		return &env{t: t, ctx: ctx, db: db, repo: repository.New(db, repository.InSchema(schema))}
	}
	require.NoError(t, migrate.Up(ctx, db))
	return &env{t: t, ctx: ctx, db: db, repo: repository.New(db)}
}

// newRun creates a running feature run.
func (e *env) newRun() uuid.UUID {
	e.t.Helper()
	id, err := e.repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{ID: uuid.New(), Phase: "plan"})
	require.NoError(e.t, err)
	return id
}

// newPhase creates a running phase result of run.
func (e *env) newPhase(run uuid.UUID) uuid.UUID {
	e.t.Helper()
	id, err := e.repo.CreatePhaseResult(e.ctx, repository.NewPhaseResult{ID: uuid.New(), FeatureRunID: run, Phase: "plan"})
	require.NoError(e.t, err)
	return id
}

// newInvocation creates a running agent invocation of run.
func (e *env) newInvocation(run uuid.UUID) uuid.UUID {
	e.t.Helper()
	id, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{ID: uuid.New(), FeatureRunID: run, Agent: "coder"})
	require.NoError(e.t, err)
	return id
}

// newSandbox creates a sandbox of run in status creating.
func (e *env) newSandbox(run uuid.UUID) string {
	e.t.Helper()
	id := "sbx-" + uuid.NewString()
	require.NoError(e.t, e.repo.CreateSandboxRecord(e.ctx, repository.NewSandbox{ID: id, FeatureRunID: run}))
	return id
}

// newCTA creates a pending CTA event of run.
func (e *env) newCTA(run uuid.UUID) string {
	e.t.Helper()
	id := "cta-" + uuid.NewString()
	require.NoError(e.t, e.repo.CreateCTAEvent(e.ctx, repository.NewCTAEvent{ID: id, FeatureRunID: run}))
	return id
}

// get loads the row with primary key id into dest.
func (e *env) get(dest any, id any) {
	e.t.Helper()
	require.NoError(e.t, e.db.WithContext(e.ctx).Where("id = ?", id).Take(dest).Error)
}

// count returns the number of rows in table.
func (e *env) count(table string) int64 {
	e.t.Helper()
	var n int64
	require.NoError(e.t, e.db.WithContext(e.ctx).Table(table).Count(&n).Error)
	return n
}

// snapshot returns every row of the five tables, every column as stored,
// for comparing the whole database before and after a call.
func (e *env) snapshot() string {
	e.t.Helper()
	return persistencetest.TakeSnapshot(e.t, e.db, persistencetest.Exact()).String()
}

// jsonEq asserts that the JSON got is JSON-equal to want.
func jsonEq(t *testing.T, want string, got []byte) {
	t.Helper()
	require.JSONEq(t, want, string(got))
}
