package contracttest

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// Sandboxes tests CreateSandboxRecord and UpdateSandboxStatus.
func Sandboxes(t *testing.T, open dbtest.Opener) {
	t.Run("Create", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		require.NoError(t, e.repo.CreateSandboxRecord(e.ctx, repository.NewSandbox{
			ID: "sbx-1", FeatureRunID: run, Provider: "e2b", Metadata: map[string]any{"cpu": 2},
		}))
		var got models.Sandbox
		e.get(&got, "sbx-1")
		assert.Equal(t, run, got.FeatureRunID)
		assert.Equal(t, models.SandboxCreating, got.Status)
		assert.Equal(t, "e2b", got.Provider)
		jsonEq(t, `{"cpu":2}`, got.Metadata)
		assert.Nil(t, got.StartedAt)

		before := e.snapshot()
		require.NoError(t, e.repo.CreateSandboxRecord(e.ctx, repository.NewSandbox{ID: "sbx-1", FeatureRunID: run, Provider: "docker"}))
		assert.Equal(t, before, e.snapshot(), "a replayed create keeps the first write")
	})

	t.Run("CreateConcurrentReplays", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		for _, err := range dbtest.Concurrently(16, func(int) error {
			return e.repo.CreateSandboxRecord(e.ctx, repository.NewSandbox{ID: "sbx-16", FeatureRunID: run})
		}) {
			require.NoError(t, err)
		}
		assert.EqualValues(t, 1, e.count("sandboxes"))
	})

	t.Run("CreateForMissingRun", func(t *testing.T) {
		e := setup(t, open)
		err := e.repo.CreateSandboxRecord(e.ctx, repository.NewSandbox{ID: "sbx-1", FeatureRunID: uuid.New()})
		require.ErrorIs(t, err, repository.ErrNotFound)
		assert.Contains(t, err.Error(), "feature run")
		assert.Zero(t, e.count("sandboxes"))
	})

	all := []models.SandboxStatus{models.SandboxCreating, models.SandboxRunning, models.SandboxPaused, models.SandboxStopped, models.SandboxFailed}
	allowed := map[[2]models.SandboxStatus]bool{
		{models.SandboxCreating, models.SandboxRunning}: true,
		{models.SandboxCreating, models.SandboxStopped}: true,
		{models.SandboxCreating, models.SandboxFailed}:  true,
		{models.SandboxRunning, models.SandboxPaused}:   true,
		{models.SandboxRunning, models.SandboxStopped}:  true,
		{models.SandboxRunning, models.SandboxFailed}:   true,
		{models.SandboxPaused, models.SandboxRunning}:   true,
		{models.SandboxPaused, models.SandboxStopped}:   true,
		{models.SandboxPaused, models.SandboxFailed}:    true,
	}
	// pathTo lists the moves that bring a new sandbox to each status.
	pathTo := map[models.SandboxStatus][]models.SandboxStatus{
		models.SandboxCreating: nil,
		models.SandboxRunning:  {models.SandboxRunning},
		models.SandboxPaused:   {models.SandboxRunning, models.SandboxPaused},
		models.SandboxStopped:  {models.SandboxRunning, models.SandboxStopped},
		models.SandboxFailed:   {models.SandboxFailed},
	}
	t.Run("TransitionMatrix", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		for _, from := range all {
			for _, to := range all {
				id := e.newSandbox(run)
				for _, step := range pathTo[from] {
					require.NoError(t, e.repo.UpdateSandboxStatus(e.ctx, id, step))
				}
				before := e.snapshot()
				err := e.repo.UpdateSandboxStatus(e.ctx, id, to)
				var got models.Sandbox
				e.get(&got, id)
				switch {
				case from == to:
					require.NoError(t, err, "%s to itself", from)
					assert.Equal(t, before, e.snapshot(), "%s to itself changes nothing", from)
				case allowed[[2]models.SandboxStatus{from, to}]:
					require.NoError(t, err, "%s to %s", from, to)
					assert.Equal(t, to, got.Status)
					assert.Equal(t, to.Terminal(), got.StoppedAt != nil, "%s to %s: stopped_at", from, to)
				default:
					require.ErrorIs(t, err, repository.ErrInvalidTransition, "%s to %s", from, to)
					assert.Equal(t, before, e.snapshot(), "%s to %s changes nothing", from, to)
				}
			}
		}
	})

	t.Run("StartedAtIsTheFirstStart", func(t *testing.T) {
		e := setup(t, open)
		id := e.newSandbox(e.newRun())
		require.NoError(t, e.repo.UpdateSandboxStatus(e.ctx, id, models.SandboxRunning))
		var first models.Sandbox
		e.get(&first, id)
		require.NotNil(t, first.StartedAt)
		require.NoError(t, e.repo.UpdateSandboxStatus(e.ctx, id, models.SandboxPaused))
		require.NoError(t, e.repo.UpdateSandboxStatus(e.ctx, id, models.SandboxRunning))
		var again models.Sandbox
		e.get(&again, id)
		assert.True(t, first.StartedAt.Equal(*again.StartedAt))
	})

	t.Run("ConcurrentStops", func(t *testing.T) {
		e := setup(t, open)
		id := e.newSandbox(e.newRun())
		require.NoError(t, e.repo.UpdateSandboxStatus(e.ctx, id, models.SandboxRunning))
		errs := dbtest.Concurrently(16, func(i int) error {
			if i%2 == 0 {
				return e.repo.UpdateSandboxStatus(e.ctx, id, models.SandboxStopped)
			}
			return e.repo.UpdateSandboxStatus(e.ctx, id, models.SandboxFailed)
		})
		var got models.Sandbox
		e.get(&got, id)
		for i, err := range errs {
			if (i%2 == 0) == (got.Status == models.SandboxStopped) {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, repository.ErrInvalidTransition)
			}
		}
	})

	t.Run("Missing", func(t *testing.T) {
		e := setup(t, open)
		require.ErrorIs(t, e.repo.UpdateSandboxStatus(e.ctx, "nope", models.SandboxRunning), repository.ErrNotFound)
		require.ErrorIs(t, e.repo.UpdateSandboxStatus(e.ctx, "nope", models.SandboxCreating), repository.ErrNotFound)
	})
}
