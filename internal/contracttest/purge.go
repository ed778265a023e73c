package contracttest

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/persistencetest"
	"github.com/agentpipeline/persistence/repository"
)

// Purge tests PurgeFeatureRuns.
func Purge(t *testing.T, open dbtest.Opener) {
	t.Run("LimitBelowOneWritesNothing", func(t *testing.T) {
		e := setup(t, open)
		run := e.purgeableRun(2)
		before := e.snapshot()
		for _, limit := range []int{0, -1} {
			n, err := e.repo.PurgeFeatureRuns(e.ctx, time.Now().Add(time.Hour), limit)
			require.ErrorIs(t, err, repository.ErrInvalidInput)
			var in *repository.InputError
			require.ErrorAs(t, err, &in)
			assert.Equal(t, "limit", in.Field)
			assert.Zero(t, n)
		}
		_, err := e.repo.PurgeFeatureRuns(e.ctx, time.Time{}, 10)
		require.ErrorIs(t, err, repository.ErrInvalidInput)
		assert.Equal(t, before, e.snapshot(), "nothing written")
		e.requireRun(run)
	})

	t.Run("OnlyFinishedRunsWithNothingPending", func(t *testing.T) {
		e := setup(t, open)
		completed := e.purgeableRun(3)
		failed := e.newRun()
		e.newInvocation(failed)
		require.NoError(t, e.repo.FailFeatureRunWithError(e.ctx, failed, "boom"))

		running := e.newRun()
		e.newInvocation(running)
		liveSandbox := e.purgeableRun(1)
		sandbox := e.newSandbox(liveSandbox)
		require.NoError(t, e.repo.UpdateSandboxStatus(e.ctx, sandbox, models.SandboxRunning))
		pendingCTA := e.purgeableRun(1)
		cta := e.newCTA(pendingCTA)

		cutoff := time.Now()
		waitPast(cutoff)
		late := e.purgeableRun(1)

		kept := []uuid.UUID{running, liveSandbox, pendingCTA, late}
		keptBefore := e.runSnapshots(kept)

		n, err := e.repo.PurgeFeatureRuns(e.ctx, cutoff, 100)
		require.NoError(t, err)
		assert.Equal(t, 2, n)
		e.requireGone(completed, failed)
		assert.Equal(t, keptBefore, e.runSnapshots(kept), "other runs' rows untouched")

		n, err = e.repo.PurgeFeatureRuns(e.ctx, cutoff, 100)
		require.NoError(t, err)
		assert.Zero(t, n, "nothing left to purge")

		// Once the sweeper and the leak finder resolved them, they go.
		require.NoError(t, e.repo.UpdateSandboxStatus(e.ctx, sandbox, models.SandboxStopped))
		require.NoError(t, e.repo.TimeoutCTAEvent(e.ctx, cta))
		keptBefore = e.runSnapshots([]uuid.UUID{running, late})
		n, err = e.repo.PurgeFeatureRuns(e.ctx, cutoff, 100)
		require.NoError(t, err)
		assert.Equal(t, 2, n)
		e.requireGone(liveSandbox, pendingCTA)
		assert.Equal(t, keptBefore, e.runSnapshots([]uuid.UUID{running, late}))
		e.requireRun(running)
		e.requireRun(late)
	})

	t.Run("Limit", func(t *testing.T) {
		e := setup(t, open)
		for range 7 {
			e.purgeableRun(1)
		}
		cutoff := time.Now()
		n, err := e.repo.PurgeFeatureRuns(e.ctx, cutoff, 3)
		require.NoError(t, err)
		assert.Equal(t, 3, n)
		assert.Equal(t, int64(4), e.count("feature_runs"))
		n, err = e.repo.PurgeFeatureRuns(e.ctx, cutoff, 100)
		require.NoError(t, err)
		assert.Equal(t, 4, n)
		assert.Zero(t, e.count("agent_invocations"))
	})

	t.Run("MoreChildrenThanTheCap", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		phase := e.newPhase(run)
		const n = 2*repository.PurgeChildRows + 500
		rows := make([]models.AgentInvocation, n)
		now := time.Now().UTC()
		for i := range rows {
			// Parents first, by creation as in the index the deletes
			// walk, so that a delete ignoring sub-agents would take
			// parents and cascade to their sub-agents, past the cap.
			at := now.Add(time.Duration(i) * time.Microsecond)
			rows[i] = models.AgentInvocation{ID: uuid.New(), FeatureRunID: run, Agent: "coder", Model: "m", Status: models.InvocationCompleted, CreatedAt: at, UpdatedAt: at}
			switch {
			case i >= n/2:
				rows[i].ParentInvocationID = &rows[i-n/2].ID
			case i%3 == 0:
				rows[i].PhaseResultID = &phase
			}
		}
		// Parents before children, in inserts of their own.
		for start := 0; start < n; start += 500 {
			require.NoError(t, e.db.WithContext(e.ctx).Omit("FeatureRun", "PhaseResult", "ParentInvocation").Create(rows[start:min(start+500, n)]).Error)
		}
		require.NoError(t, e.repo.CompleteFeatureRun(e.ctx, run))
		other := e.purgeableRun(2)
		e.newRun()
		cutoff := time.Now()

		// Every DELETE's rows, as the Raw chain reports them.
		var mu sync.Mutex
		var deletes []int64
		require.NoError(t, e.db.Callback().Raw().After("gorm:raw").Register("test:purge_rows", func(tx *gorm.DB) {
			mu.Lock()
			defer mu.Unlock()
			deletes = append(deletes, tx.RowsAffected)
		}))
		got, err := e.repo.PurgeFeatureRuns(e.ctx, cutoff, 10)
		require.NoError(t, err)
		assert.Equal(t, 2, got)
		e.requireGone(run, other)
		assert.Zero(t, e.count("agent_invocations"))
		assert.Equal(t, int64(1), e.count("feature_runs"))
		var total int64
		for _, k := range deletes {
			assert.LessOrEqual(t, k, int64(repository.PurgeChildRows), "a statement deleted more than the cap")
			total += k
		}
		// The big run: its invocations, its phase and itself; the other: 2
		// invocations, a phase, 2 sandboxes, 2 CTA events and itself.
		assert.Equal(t, int64(n+2+8), total, "every row deleted by the purge's own statements, none by a cascade")
		assert.Greater(t, len(deletes), 4, "the run took several statements")
	})

	t.Run("ConcurrentPurgersAddUp", func(t *testing.T) {
		e := setup(t, open)
		const runs = 64
		for range runs {
			e.purgeableRun(2)
		}
		running := e.newRun()
		cutoff := time.Now()
		var total atomic.Int64
		errs := dbtest.Concurrently(8, func(int) error {
			for {
				n, err := e.repo.PurgeFeatureRuns(e.ctx, cutoff, 7)
				if err != nil {
					return err
				}
				if n == 0 {
					return nil
				}
				total.Add(int64(n))
			}
		})
		require.NoError(t, errors.Join(errs...))
		assert.Equal(t, int64(runs), total.Load(), "each run counted once")
		assert.Equal(t, int64(1), e.count("feature_runs"))
		assert.Zero(t, e.count("agent_invocations"))
		assert.Zero(t, e.count("phase_results"))
		e.requireRun(running)
	})

	t.Run("ReplayedCreateMakesANewRun", func(t *testing.T) {
		e := setup(t, open)
		run := e.purgeableRun(1)
		require.NoError(t, e.repo.AtStep(5).UpdateFeatureRunPhase(e.ctx, run, "plan"))
		n, err := e.repo.PurgeFeatureRuns(e.ctx, time.Now(), 1)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		id, err := e.repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{ID: run, Phase: "plan"})
		require.NoError(t, err)
		assert.Equal(t, run, id)
		got, err := e.repo.GetFeatureRun(e.ctx, run)
		require.NoError(t, err)
		assert.Equal(t, models.RunRunning, got.Status)
		assert.Nil(t, got.Step, "the new run has no step")
		assert.Nil(t, got.CompletedAt)
		assert.Zero(t, e.count("agent_invocations"))
	})

	t.Run("InTransaction", func(t *testing.T) {
		e := setup(t, open)
		run := e.purgeableRun(2)
		cutoff := time.Now()
		errRollback := errors.New("roll back")
		err := e.repo.Transaction(e.ctx, func(tx *repository.Repository) error {
			n, err := tx.PurgeFeatureRuns(e.ctx, cutoff, 10)
			require.NoError(t, err)
			assert.Equal(t, 1, n)
			return errRollback
		})
		require.ErrorIs(t, err, errRollback)
		e.requireRun(run)
		assert.Equal(t, int64(2), e.count("agent_invocations"), "rolled back with the transaction")
		require.NoError(t, e.repo.Transaction(e.ctx, func(tx *repository.Repository) error {
			n, err := tx.PurgeFeatureRuns(e.ctx, cutoff, 10)
			assert.Equal(t, 1, n)
			return err
		}))
		e.requireGone(run)
	})

	t.Run("DryRun", func(t *testing.T) {
		e := setup(t, open)
		e.purgeableRun(2)
		cutoff := time.Now()
		before := e.snapshot()
		rec := dbtest.RecorderOf(e.db)
		rec.Start()
		n, err := repository.New(e.db.Session(&gorm.Session{DryRun: true})).PurgeFeatureRuns(e.ctx, cutoff, 10)
		stmts, _ := rec.Stop()
		require.NoError(t, err)
		assert.Zero(t, n)
		assert.NotEmpty(t, stmts, "the claim is rendered")
		assert.Equal(t, before, e.snapshot())
	})
}

// purgeableRun creates a run with a phase result, invocations invocations
// (the second a sub-agent of the first), a stopped and a failed sandbox and
// a completed and a timed-out CTA event, and completes it.
func (e *env) purgeableRun(invocations int) uuid.UUID {
	e.t.Helper()
	run := e.newRun()
	phase := e.newPhase(run)
	var parent *uuid.UUID
	for i := range invocations {
		in := repository.NewAgentInvocation{ID: uuid.New(), FeatureRunID: run, Agent: "coder", ParentInvocationID: parent}
		if i == 0 {
			in.PhaseResultID = &phase
		}
		id, err := e.repo.CreateAgentInvocation(e.ctx, in)
		require.NoError(e.t, err)
		if i == 0 {
			parent = &id
		}
	}
	stopped, failed := e.newSandbox(run), e.newSandbox(run)
	require.NoError(e.t, e.repo.UpdateSandboxStatus(e.ctx, stopped, models.SandboxRunning))
	require.NoError(e.t, e.repo.UpdateSandboxStatus(e.ctx, stopped, models.SandboxStopped))
	require.NoError(e.t, e.repo.UpdateSandboxStatus(e.ctx, failed, models.SandboxFailed))
	answered, timedOut := e.newCTA(run), e.newCTA(run)
	require.NoError(e.t, e.repo.CompleteCTAEvent(e.ctx, answered, "yes"))
	require.NoError(e.t, e.repo.TimeoutCTAEvent(e.ctx, timedOut))
	require.NoError(e.t, e.repo.CompleteFeatureRun(e.ctx, run))
	return run
}

// runSnapshots returns the exact snapshot of each run, its rows included.
func (e *env) runSnapshots(runs []uuid.UUID) map[uuid.UUID]string {
	e.t.Helper()
	s := map[uuid.UUID]string{}
	for _, run := range runs {
		s[run] = persistencetest.TakeSnapshot(e.t, e.db, persistencetest.Exact(), persistencetest.OfRun(run)).String()
	}
	return s
}

// requireGone asserts that no row of the runs is left in any table.
func (e *env) requireGone(runs ...uuid.UUID) {
	e.t.Helper()
	for _, run := range runs {
		s := persistencetest.TakeSnapshot(e.t, e.db, persistencetest.Exact(), persistencetest.OfRun(run))
		assert.Zero(e.t, s.Rows(), "rows of purged run %s left:\n%s", run, s)
	}
}

// requireRun asserts that the run exists.
func (e *env) requireRun(run uuid.UUID) {
	e.t.Helper()
	_, err := e.repo.GetFeatureRun(e.ctx, run)
	require.NoError(e.t, err, "run %s", run)
}

// waitPast waits until the clock is past t, so that what is written next
// is written after it.
func waitPast(t time.Time) {
	for !time.Now().After(t.Add(time.Microsecond)) {
		time.Sleep(time.Millisecond)
	}
}
