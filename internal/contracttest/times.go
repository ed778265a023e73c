package contracttest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// Times tests that time arguments finer than the microsecond the databases
// store get the exact answer on every database, that no deadline is
// reached early, and that getters return UTC.
func Times(t *testing.T, open dbtest.Opener) {
	// at is a creation time, in whole microseconds as stored.
	at := time.Date(2030, 6, 7, 8, 9, 10, 123_456_000, time.UTC)

	t.Run("ListBoundsBelowAMicrosecond", func(t *testing.T) {
		e := setup(t, open)
		repo := repository.New(e.db.Session(&gorm.Session{NowFunc: func() time.Time { return at }}))
		run, err := repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{Phase: "plan"})
		require.NoError(t, err)
		for _, c := range []struct {
			name   string
			filter repository.RunFilter
			found  bool
		}{
			{"FromAt", repository.RunFilter{CreatedFrom: at}, true},
			{"FromHalfAMicrosecondBefore", repository.RunFilter{CreatedFrom: at.Add(-500 * time.Nanosecond)}, true},
			{"FromANanosecondAfter", repository.RunFilter{CreatedFrom: at.Add(time.Nanosecond)}, false},
			{"FromHalfAMicrosecondAfter", repository.RunFilter{CreatedFrom: at.Add(500 * time.Nanosecond)}, false},
			{"BeforeAt", repository.RunFilter{CreatedBefore: at}, false},
			{"BeforeANanosecondAfter", repository.RunFilter{CreatedBefore: at.Add(time.Nanosecond)}, true},
			{"BeforeHalfAMicrosecondAfter", repository.RunFilter{CreatedBefore: at.Add(500 * time.Nanosecond)}, true},
			{"BeforeHalfAMicrosecondBefore", repository.RunFilter{CreatedBefore: at.Add(-500 * time.Nanosecond)}, false},
			{"FromInAnotherZone", repository.RunFilter{CreatedFrom: at.Add(time.Nanosecond).In(time.FixedZone("UTC-7", -7*3600))}, false},
		} {
			page, err := repo.ListFeatureRuns(e.ctx, c.filter, repository.Page{})
			require.NoError(t, err, c.name)
			assert.Equal(t, c.found, len(page.Runs) == 1 && page.Runs[0].ID == run, c.name)
		}
	})

	t.Run("DeadlineNeverEarly", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		deadline := at.Add(time.Nanosecond)
		require.NoError(t, e.repo.CreateCTAEvent(e.ctx, repository.NewCTAEvent{ID: "cta", FeatureRunID: run, ExpiresAt: deadline}))
		cta, err := e.repo.GetCTAEvent(e.ctx, "cta")
		require.NoError(t, err)
		require.NotNil(t, cta.ExpiresAt)
		assert.False(t, cta.ExpiresAt.Before(deadline), "stored deadline %v is not before %v", cta.ExpiresAt, deadline)

		for _, now := range []time.Time{at, deadline.Add(-time.Nanosecond), at.Add(999 * time.Nanosecond)} {
			if now.Before(deadline) {
				expired, err := e.repo.ExpireCTAEvents(e.ctx, now, 10)
				require.NoError(t, err)
				assert.Empty(t, expired, "at %v, before the deadline %v", now, deadline)
			}
		}
		expired, err := e.repo.ExpireCTAEvents(e.ctx, at.Add(time.Microsecond), 10)
		require.NoError(t, err)
		assert.Equal(t, []string{"cta"}, expired, "the deadline has passed")
	})

	t.Run("GettersReturnUTC", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		phase := e.newPhase(run)
		invocation, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{
			FeatureRunID: run, Agent: "a", StartedAt: ptr(at.In(time.FixedZone("UTC-3", -3*3600))),
		})
		require.NoError(t, err)
		sandbox := e.newSandbox(run)
		require.NoError(t, e.repo.UpdateSandboxStatus(e.ctx, sandbox, models.SandboxStopped))
		require.NoError(t, e.repo.CreateCTAEvent(e.ctx, repository.NewCTAEvent{ID: "cta", FeatureRunID: run, ExpiresAt: at.In(time.FixedZone("UTC+9", 9*3600))}))
		require.NoError(t, e.repo.TimeoutCTAEvent(e.ctx, "cta"))
		require.NoError(t, e.repo.PassPhaseResult(e.ctx, phase, "ok"))
		require.NoError(t, e.repo.CompleteAgentInvocation(e.ctx, invocation, repository.InvocationResult{}))
		require.NoError(t, e.repo.CompleteFeatureRun(e.ctx, run))

		var times []*time.Time
		r, err := e.repo.GetFeatureRun(e.ctx, run)
		require.NoError(t, err)
		times = append(times, &r.CreatedAt, &r.UpdatedAt, r.CompletedAt)
		s, err := e.repo.GetSandbox(e.ctx, sandbox)
		require.NoError(t, err)
		times = append(times, &s.CreatedAt, &s.UpdatedAt, s.StoppedAt)
		p, err := e.repo.GetPhaseResult(e.ctx, phase)
		require.NoError(t, err)
		times = append(times, &p.CreatedAt, &p.UpdatedAt, p.FinishedAt)
		i, err := e.repo.GetAgentInvocation(e.ctx, invocation)
		require.NoError(t, err)
		times = append(times, &i.CreatedAt, &i.UpdatedAt, i.FinishedAt, i.StartedAt)
		c, err := e.repo.GetCTAEvent(e.ctx, "cta")
		require.NoError(t, err)
		times = append(times, &c.CreatedAt, &c.UpdatedAt, c.ExpiresAt, c.ResolvedAt)
		tl, err := e.repo.RunTimeline(e.ctx, run)
		require.NoError(t, err)
		times = append(times, &tl.Run.CreatedAt, &tl.Phases[0].CreatedAt, tl.Unphased[0].FinishedAt, tl.Unphased[0].StartedAt, tl.Sandboxes[0].StoppedAt, tl.CTAEvents[0].ExpiresAt)
		page, err := e.repo.ListFeatureRuns(e.ctx, repository.RunFilter{}, repository.Page{})
		require.NoError(t, err)
		times = append(times, &page.Runs[0].CreatedAt, page.Runs[0].CompletedAt)
		for n, tm := range times {
			require.NotNil(t, tm, "time %d", n)
			assert.Equal(t, time.UTC, tm.Location(), "time %d: %v", n, *tm)
		}
		assert.True(t, at.Equal(*c.ExpiresAt))
		assert.True(t, at.Equal(*i.StartedAt))
	})
}
