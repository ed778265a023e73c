package contracttest

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// LeakedSandboxes tests LeakedSandboxes.
func LeakedSandboxes(t *testing.T, open dbtest.Opener) {
	t.Run("LiveSandboxesOfEndedOrIdleRuns", func(t *testing.T) {
		e := setup(t, open)
		// sandbox creates a sandbox of run and moves it through statuses.
		sandbox := func(run uuid.UUID, statuses ...models.SandboxStatus) string {
			id := e.newSandbox(run)
			for _, s := range statuses {
				require.NoError(t, e.repo.UpdateSandboxStatus(e.ctx, id, s))
			}
			return id
		}
		completed, failed, active, idle := e.newRun(), e.newRun(), e.newRun(), e.newRun()
		leaked := []string{
			sandbox(completed, models.SandboxRunning),
			sandbox(completed, models.SandboxRunning, models.SandboxPaused),
			sandbox(failed),
			sandbox(idle, models.SandboxRunning),
		}
		sandbox(completed, models.SandboxRunning, models.SandboxStopped)
		sandbox(failed, models.SandboxFailed)
		sandbox(active, models.SandboxRunning)
		sandbox(idle, models.SandboxStopped)
		require.NoError(t, e.repo.CompleteFeatureRun(e.ctx, completed))
		require.NoError(t, e.repo.FailFeatureRun(e.ctx, failed))
		require.NoError(t, e.db.Exec("UPDATE feature_runs SET updated_at = ? WHERE id = ?", time.Now().UTC().Add(-2*time.Hour), idle).Error)

		got, err := e.repo.LeakedSandboxes(e.ctx, time.Hour)
		require.NoError(t, err)
		var ids []string
		for _, s := range got {
			ids = append(ids, s.ID)
			assert.False(t, s.Status.Terminal(), s.ID)
		}
		assert.ElementsMatch(t, leaked, ids)

		got, err = e.repo.LeakedSandboxes(e.ctx, 3*time.Hour)
		require.NoError(t, err)
		assert.Len(t, got, 3, "the idle run is not idle for three hours")
	})

	t.Run("BadInput", func(t *testing.T) {
		e := setup(t, open)
		_, err := e.repo.LeakedSandboxes(e.ctx, 0)
		assert.ErrorIs(t, err, repository.ErrInvalidInput)
	})
}
