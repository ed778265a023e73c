package contracttest

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/persistencetest"
	"github.com/agentpipeline/persistence/repository"
)

// Fencing tests Repository.AtStep: the fenced moves of a run's phase and
// a sandbox's status, the writes that ignore the step, and zombies, the
// late copies of earlier steps.
func Fencing(t *testing.T, open dbtest.Opener) {
	t.Run("Phase", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		require.Equal(t, sql.NullInt64{}, e.step("feature_runs", run), "a new row has no step")

		require.NoError(t, e.repo.AtStep(5).UpdateFeatureRunPhase(e.ctx, run, "implement"))
		assert.Equal(t, "implement", e.rowState("feature_runs", run).phase)
		assert.Equal(t, sql.NullInt64{Int64: 5, Valid: true}, e.step("feature_runs", run), "a move that changes the row takes its step")

		before := e.snapshot()
		require.NoError(t, e.repo.AtStep(4).UpdateFeatureRunPhase(e.ctx, run, "plan"), "a move superseded by a later step returns nil")
		assert.Equal(t, before, e.snapshot(), "and changes nothing")
		require.NoError(t, e.repo.AtStep(5).UpdateFeatureRunPhase(e.ctx, run, "implement"))
		assert.Equal(t, before, e.snapshot(), "a replay at the same step changes nothing")

		var was, now models.FeatureRun
		e.get(&was, run)
		require.NoError(t, e.repo.AtStep(7).UpdateFeatureRunPhase(e.ctx, run, "implement"))
		assert.Equal(t, sql.NullInt64{Int64: 7, Valid: true}, e.step("feature_runs", run), "a move that finds the row as asked advances its step")
		e.get(&now, run)
		assert.Equal(t, was.UpdatedAt, now.UpdatedAt, "and leaves updated_at")
		assert.Equal(t, was.Phase, now.Phase)

		require.NoError(t, e.repo.UpdateFeatureRunPhase(e.ctx, run, "review"), "an unfenced move follows arrival order")
		assert.Equal(t, "review", e.rowState("feature_runs", run).phase)
		assert.Equal(t, sql.NullInt64{Int64: 7, Valid: true}, e.step("feature_runs", run), "an unfenced move never changes the step")

		require.NoError(t, e.repo.CompleteFeatureRun(e.ctx, run))
		before = e.snapshot()
		err := e.repo.AtStep(8).UpdateFeatureRunPhase(e.ctx, run, "plan")
		var te *repository.TransitionError
		require.ErrorAs(t, err, &te, "a refused move at a later step is refused")
		assert.Equal(t, "completed", te.From)
		assert.Equal(t, before, e.snapshot(), "and leaves the row, its step included")
		require.NoError(t, e.repo.AtStep(6).UpdateFeatureRunPhase(e.ctx, run, "plan"), "a move that would be refused, superseded, returns nil")
		assert.Equal(t, before, e.snapshot())
		require.NoError(t, e.repo.AtStep(9).UpdateFeatureRunPhase(e.ctx, run, "review"), "a finished run already as asked is a replay")
		assert.Equal(t, sql.NullInt64{Int64: 9, Valid: true}, e.step("feature_runs", run))

		require.ErrorIs(t, e.repo.AtStep(1).UpdateFeatureRunPhase(e.ctx, uuid.New(), "plan"), repository.ErrNotFound)
	})

	t.Run("SandboxEveryStatus", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		for _, to := range []models.SandboxStatus{models.SandboxCreating, models.SandboxRunning, models.SandboxPaused, models.SandboxStopped, models.SandboxFailed} {
			sbx := e.newSandbox(run)
			require.NoError(t, e.repo.AtStep(3).UpdateSandboxStatus(e.ctx, sbx, models.SandboxRunning))
			if to == models.SandboxRunning {
				require.NoError(t, e.repo.AtStep(4).UpdateSandboxStatus(e.ctx, sbx, models.SandboxPaused))
			}
			before := e.snapshot()
			require.NoError(t, e.repo.AtStep(2).UpdateSandboxStatus(e.ctx, sbx, to), "a stale move to %s returns nil", to)
			assert.Equal(t, before, e.snapshot(), "a stale move to %s changes nothing", to)
			if to == models.SandboxCreating {
				continue
			}
			require.NoError(t, e.repo.AtStep(5).UpdateSandboxStatus(e.ctx, sbx, to))
			var got models.Sandbox
			e.get(&got, sbx)
			assert.Equal(t, to, got.Status)
			assert.Equal(t, sql.NullInt64{Int64: 5, Valid: true}, e.step("sandboxes", sbx))
		}
	})

	t.Run("NullStepIsZero", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		sbx := e.newSandbox(run)
		require.NoError(t, e.repo.UpdateSandboxStatus(e.ctx, sbx, models.SandboxRunning))
		require.Equal(t, sql.NullInt64{}, e.step("sandboxes", sbx), "an unfenced move leaves the step NULL")
		require.NoError(t, e.repo.AtStep(1).UpdateSandboxStatus(e.ctx, sbx, models.SandboxPaused), "step 1 is after NULL")
		assert.Equal(t, sql.NullInt64{Int64: 1, Valid: true}, e.step("sandboxes", sbx))
		assert.Equal(t, models.SandboxPaused, e.sandboxStatus(sbx))
	})

	t.Run("OneStepMovesTwice", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		sbx := e.newSandbox(run)
		at := e.repo.AtStep(3)
		for _, to := range []models.SandboxStatus{models.SandboxRunning, models.SandboxPaused, models.SandboxRunning} {
			require.NoError(t, at.UpdateSandboxStatus(e.ctx, sbx, to), "the moves of one step follow arrival order")
			assert.Equal(t, to, e.sandboxStatus(sbx))
		}
		for _, phase := range []string{"implement", "review"} {
			require.NoError(t, at.UpdateFeatureRunPhase(e.ctx, run, phase))
			assert.Equal(t, phase, e.rowState("feature_runs", run).phase)
		}
		require.NoError(t, at.UpdateSandboxStatus(e.ctx, sbx, models.SandboxPaused))
		assert.Equal(t, models.SandboxPaused, e.sandboxStatus(sbx), "so a late copy of a move takes effect after a later move of its own step")
		assert.Equal(t, sql.NullInt64{Int64: 3, Valid: true}, e.step("sandboxes", sbx))
		assert.Equal(t, sql.NullInt64{Int64: 3, Valid: true}, e.step("feature_runs", run))
	})

	t.Run("InvalidStep", func(t *testing.T) {
		e := setup(t, open)
		f := e.fixture()
		before := e.snapshot()
		for _, step := range []int64{0, -1} {
			for _, w := range writes() {
				err := w.call(e.ctx, e.repo.AtStep(step), f)
				var ie *repository.InputError
				if assert.ErrorAs(t, err, &ie, "%s at step %d", w.name, step) {
					assert.Equal(t, "step", ie.Field)
				}
			}
			_, err := e.repo.AtStep(step).ExpireCTAEvents(e.ctx, time.Now().Add(time.Hour), 10)
			assert.ErrorIs(t, err, repository.ErrInvalidInput, "ExpireCTAEvents at step %d", step)
			assert.Equal(t, before, e.snapshot(), "nothing written at step %d", step)
			_, err = e.repo.AtStep(step).GetFeatureRun(e.ctx, f.run)
			assert.NoError(t, err, "reads ignore the step")
		}
	})

	t.Run("OtherWritesIgnoreStep", func(t *testing.T) {
		e := setup(t, open)
		for _, w := range writes() {
			if w.name == "UpdateFeatureRunPhase" || w.name == "UpdateSandboxStatus" {
				continue
			}
			f := e.fixture()
			require.NoError(t, e.repo.AtStep(100).UpdateSandboxStatus(e.ctx, f.sandbox, models.SandboxRunning))
			require.NoError(t, e.repo.AtStep(100).UpdateFeatureRunPhase(e.ctx, f.run, "implement"))
			before := e.snapshot()
			require.NoError(t, w.call(e.ctx, e.repo.AtStep(1), f), "%s at an earlier step than its rows'", w.name)
			assert.NotEqual(t, before, e.snapshot(), "%s wrote", w.name)
			assert.Equal(t, sql.NullInt64{Int64: 100, Valid: true}, e.step("feature_runs", f.run), "%s leaves the step", w.name)
			assert.Equal(t, sql.NullInt64{Int64: 100, Valid: true}, e.step("sandboxes", f.sandbox), "%s leaves the step", w.name)
		}
	})

	t.Run("WorkflowReplayedFromStart", func(t *testing.T) {
		e := setup(t, open)
		steps := zombieWorkflow(uuid.NewString())
		for i, s := range steps {
			require.NoError(t, s.run(e.ctx, e.repo.AtStep(int64(i+1))), "step %d %s", i+1, s.name)
		}
		before := e.snapshot()
		for i, s := range steps {
			require.NoError(t, s.run(e.ctx, e.repo.AtStep(int64(i+1))), "step %d %s, replayed", i+1, s.name)
		}
		assert.Equal(t, before, e.snapshot(), "a workflow replayed from its first step changes nothing")
	})

	t.Run("Zombies", func(t *testing.T) {
		for _, fenced := range []bool{true, false} {
			t.Run(fmt.Sprintf("fenced=%v", fenced), func(t *testing.T) {
				if !fenced && testing.Short() {
					t.Skip("skipping under -short: the unfenced zombies show the fence at work, which the fenced ones rely on")
				}
				var mu sync.Mutex
				damaged := map[string]bool{}
				ran := 0
				if !fenced {
					// Runs once every zombie's subtest, each parallel, ended,
					// unless they were skipped, without a server.
					t.Cleanup(func() {
						if ran == 0 {
							return
						}
						assert.Equal(t, map[string]bool{"UpdateFeatureRunPhase": true, "UpdateSandboxStatus": true}, damaged,
							"without AtStep, the zombies of phase and sandbox moves, and only those, undo a later step")
					})
				}
				for k, s := range zombieWorkflow("") {
					t.Run(fmt.Sprintf("step %d %s", k+1, s.name), func(t *testing.T) {
						e := setup(t, open)
						at := func(i int) *repository.Repository {
							if fenced {
								return e.repo.AtStep(int64(i + 1))
							}
							return e.repo
						}
						steps := zombieWorkflow(uuid.NewString())
						for i, s := range steps {
							require.NoError(t, s.run(e.ctx, at(i)), "step %d %s", i+1, s.name)
						}
						clean := persistencetest.TakeSnapshot(t, e.db, persistencetest.Exact())
						_ = steps[k].run(e.ctx, at(k)) // a zombie's answer reaches no one
						d := persistencetest.Diff(clean, persistencetest.TakeSnapshot(t, e.db, persistencetest.Exact()))
						mu.Lock()
						ran++
						mu.Unlock()
						if fenced {
							assert.Empty(t, d, "the zombie of step %d %s changed the tables:\n%s", k+1, s.name, d)
						} else if len(d) > 0 {
							mu.Lock()
							damaged[s.name] = true
							mu.Unlock()
						}
					})
				}
			})
		}
	})
}

// zombieStep is one step of zombieWorkflow.
type zombieStep struct {
	name string
	run  func(ctx context.Context, r *repository.Repository) error
}

// zombieWorkflow is a workflow in which each of the fifteen contract writes
// is a step, and later steps write to the rows it wrote: the run's phase
// moves on, the sandbox pauses and resumes, and the run stays running, so
// that a late move could take it back. key names its rows.
func zombieWorkflow(key string) []zombieStep {
	run := repository.StableID(key, "run")
	done, failed := repository.StableID(key, "done"), repository.StableID(key, "failed")
	phase, phase2 := repository.StableID(key, "phase"), repository.StableID(key, "phase 2")
	inv := repository.StableID(key, "invocation")
	sbx, cta, cta2 := "sbx-"+key, "cta-"+key, "cta2-"+key
	create := func(id uuid.UUID) func(ctx context.Context, r *repository.Repository) error {
		return func(ctx context.Context, r *repository.Repository) error {
			_, err := r.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: id, Phase: "plan", Memories: []any{"first"}})
			return err
		}
	}
	moveTo := func(p string) func(ctx context.Context, r *repository.Repository) error {
		return func(ctx context.Context, r *repository.Repository) error { return r.UpdateFeatureRunPhase(ctx, run, p) }
	}
	sandboxTo := func(s models.SandboxStatus) func(ctx context.Context, r *repository.Repository) error {
		return func(ctx context.Context, r *repository.Repository) error { return r.UpdateSandboxStatus(ctx, sbx, s) }
	}
	return []zombieStep{
		{"CreateFeatureRun", create(run)},
		{"UpdateFeatureRunPhase", moveTo("implement")},
		{"UpdateFeatureRunMemories", func(ctx context.Context, r *repository.Repository) error {
			return r.UpdateFeatureRunMemories(ctx, run, []any{"a"})
		}},
		{"CreateSandboxRecord", func(ctx context.Context, r *repository.Repository) error {
			return r.CreateSandboxRecord(ctx, repository.NewSandbox{ID: sbx, FeatureRunID: run, Provider: "e2b"})
		}},
		{"UpdateSandboxStatus", sandboxTo(models.SandboxRunning)},
		{"UpdateSandboxStatus", sandboxTo(models.SandboxPaused)},
		{"UpdateFeatureRunMemories", func(ctx context.Context, r *repository.Repository) error {
			return r.UpdateFeatureRunMemories(ctx, run, []any{"b"})
		}},
		{"UpdateSandboxStatus", sandboxTo(models.SandboxRunning)},
		{"UpdateFeatureRunPhase", moveTo("review")},
		{"CreatePhaseResult", func(ctx context.Context, r *repository.Repository) error {
			_, err := r.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: phase, FeatureRunID: run, Phase: "review"})
			return err
		}},
		{"PassPhaseResult", func(ctx context.Context, r *repository.Repository) error {
			return r.PassPhaseResult(ctx, phase, map[string]any{"ok": true})
		}},
		{"CreatePhaseResult", func(ctx context.Context, r *repository.Repository) error {
			_, err := r.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: phase2, FeatureRunID: run, Phase: "review"})
			return err
		}},
		{"FailPhaseResult", func(ctx context.Context, r *repository.Repository) error { return r.FailPhaseResult(ctx, phase2) }},
		{"CreateAgentInvocation", func(ctx context.Context, r *repository.Repository) error {
			_, err := r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{ID: inv, FeatureRunID: run, PhaseResultID: &phase, Agent: "coder"})
			return err
		}},
		{"CompleteAgentInvocation", func(ctx context.Context, r *repository.Repository) error {
			return r.CompleteAgentInvocation(ctx, inv, repository.InvocationResult{Output: "done", InputTokens: 10})
		}},
		{"CreateCTAEvent", func(ctx context.Context, r *repository.Repository) error {
			return r.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: cta, FeatureRunID: run})
		}},
		{"CompleteCTAEvent", func(ctx context.Context, r *repository.Repository) error {
			return r.CompleteCTAEvent(ctx, cta, map[string]any{"approved": true})
		}},
		{"CreateCTAEvent", func(ctx context.Context, r *repository.Repository) error {
			return r.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: cta2, FeatureRunID: run})
		}},
		{"TimeoutCTAEvent", func(ctx context.Context, r *repository.Repository) error { return r.TimeoutCTAEvent(ctx, cta2) }},
		{"CreateFeatureRun", create(done)},
		{"CompleteFeatureRun", func(ctx context.Context, r *repository.Repository) error { return r.CompleteFeatureRun(ctx, done) }},
		{"CreateFeatureRun", create(failed)},
		{"FailFeatureRun", func(ctx context.Context, r *repository.Repository) error { return r.FailFeatureRun(ctx, failed) }},
		{"UpdateFeatureRunPhase", moveTo("ship")},
		{"UpdateSandboxStatus", sandboxTo(models.SandboxPaused)},
		{"UpdateSandboxStatus", sandboxTo(models.SandboxRunning)},
	}
}

// step reads the step column of the row of table with primary key id.
func (e *env) step(table string, id any) sql.NullInt64 {
	e.t.Helper()
	var step sql.NullInt64
	require.NoError(e.t, e.db.WithContext(e.ctx).Table(table).Select("step").Where("id = ?", id).Row().Scan(&step))
	return step
}

// sandboxStatus reads the status of sandbox id.
func (e *env) sandboxStatus(id string) models.SandboxStatus {
	e.t.Helper()
	var got models.Sandbox
	e.get(&got, id)
	return got.Status
}
