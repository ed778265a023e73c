package contracttest

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

var ddl = regexp.MustCompile(`(?i)^\s*(CREATE|ALTER|DROP)\b`)

// Migrate tests migrate.Up.
func Migrate(t *testing.T, open dbtest.Opener) {
	t.Run("SecondRunChangesNothing", func(t *testing.T) {
		e := setup(t, open)
		f := e.fixture()
		_, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: f.run, PhaseResultID: &f.phase, Agent: "a"})
		require.NoError(t, err)
		before := e.snapshot()

		rec := dbtest.RecorderOf(e.db)
		rec.Start()
		require.NoError(t, migrate.Up(e.ctx, e.db))
		stmts, _ := rec.Stop()
		require.NotEmpty(t, stmts, "the recorder saw the migration")
		for _, s := range stmts {
			assert.NotRegexp(t, ddl, s, "a second Up changes no schema")
		}
		assert.Equal(t, before, e.snapshot(), "and loses no row")
	})

	t.Run("ConcurrentUps", func(t *testing.T) {
		t.Parallel()
		db := open(t)
		for i, err := range dbtest.Concurrently(8, func(int) error { return migrate.Up(t.Context(), db) }) {
			require.NoError(t, err, "migration %d", i)
		}
		for _, m := range migrate.Models() {
			assert.True(t, db.Migrator().HasTable(m))
		}
	})

	// MariaDB's schema is written by hand, apart from the models: each
	// field of a model must have its column there too.
	t.Run("EveryFieldHasAColumn", func(t *testing.T) {
		e := setup(t, open)
		for _, m := range migrate.Models() {
			stmt := &gorm.Statement{DB: e.db}
			require.NoError(t, stmt.Parse(m))
			for _, f := range stmt.Schema.Fields {
				if f.DBName != "" && !f.IgnoreMigration {
					assert.True(t, e.db.Migrator().HasColumn(m, f.DBName), "%s.%s", stmt.Schema.Table, f.DBName)
				}
			}
		}
	})

	t.Run("ForeignKeysCascade", func(t *testing.T) {
		e := setup(t, open)
		for _, m := range []any{&models.Sandbox{}, &models.PhaseResult{}, &models.AgentInvocation{}, &models.CTAEvent{}} {
			assert.True(t, e.db.Migrator().HasConstraint(m, "FeatureRun"), "%T references feature_runs", m)
		}
		assert.True(t, e.db.Migrator().HasConstraint(&models.AgentInvocation{}, "PhaseResult"))
	})

	// The parent link is a foreign key on PostgreSQL, and triggers on
	// SQLite, where a foreign key cannot be added to an existing table
	// without rebuilding it (see models.AgentInvocation.ParentInvocationID);
	// a new schema has the same as an upgraded one.
	t.Run("ParentInvocationLink", func(t *testing.T) {
		e := setup(t, open)
		var triggers []string
		if e.db.Dialector.Name() == "sqlite" {
			require.NoError(t, e.db.Raw("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'agent_invocations' ORDER BY name").Scan(&triggers).Error)
			assert.False(t, e.db.Migrator().HasConstraint(&models.AgentInvocation{}, "ParentInvocation"))
			assert.Equal(t, []string{"agent_invocations_parent_delete", "agent_invocations_parent_insert", "agent_invocations_parent_rekey", "agent_invocations_parent_update"}, triggers)
			return
		}
		assert.True(t, e.db.Migrator().HasConstraint(&models.AgentInvocation{}, "ParentInvocation"))
	})
}
