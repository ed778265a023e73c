package persistencetest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/workload"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/persistencetest"
	"github.com/agentpipeline/persistence/repository"
)

// fakeTB records the failures of the test it stands for. FailNow ends the
// goroutine that calls it, as testing.T's does; run code that may call it
// with runFake.
type fakeTB struct {
	testing.TB
	mu     sync.Mutex
	failed bool
	msgs   []string
}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = true
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Error(args ...any) { f.Errorf("%s", fmt.Sprint(args...)) }

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	f.FailNow()
}

func (f *fakeTB) Fatal(args ...any) {
	f.Error(args...)
	f.FailNow()
}

func (f *fakeTB) Fail() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = true
}

func (f *fakeTB) FailNow() {
	f.Fail()
	runtime.Goexit()
}

func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// runFake runs fn with a fakeTB standing for t, in a goroutine of its own
// that FailNow may end, and returns whether fn failed it and with what.
// Cleanups go to t.
func runFake(t *testing.T, fn func(tb testing.TB)) (failed bool, msgs []string) {
	t.Helper()
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f.Failed(), f.msgs
}

// onboarding is a small replay-safe workflow: every ID derived from the
// event, every value fixed, every write through the Repository.
type onboarding struct {
	run, phase, invocation uuid.UUID
}

func newOnboarding(event string) onboarding {
	return onboarding{
		run:        repository.StableID(event, "run"),
		phase:      repository.StableID(event, "phase", "plan"),
		invocation: repository.StableID(event, "invocation", "planner"),
	}
}

func (o onboarding) createRun() persistencetest.Step {
	return persistencetest.Step{Name: "create run", Run: func(ctx context.Context, repo *repository.Repository) error {
		_, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: o.run, Phase: "plan", Metadata: map[string]any{"repo": "acme/web"}})
		return err
	}}
}

func (o onboarding) startPlan() persistencetest.Step {
	return persistencetest.Step{Name: "start plan", Run: func(ctx context.Context, repo *repository.Repository) error {
		_, err := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: o.phase, FeatureRunID: o.run, Phase: "plan"})
		return err
	}}
}

func (o onboarding) invokePlanner(id uuid.UUID) persistencetest.Step {
	return persistencetest.Step{Name: "invoke planner", Run: func(ctx context.Context, repo *repository.Repository) error {
		_, err := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{
			ID: id, FeatureRunID: o.run, PhaseResultID: &o.phase, Agent: "planner", Model: "claude-opus-4",
		})
		return err
	}}
}

func (o onboarding) remember(memory string) persistencetest.Step {
	return persistencetest.Step{Name: "remember", Run: func(ctx context.Context, repo *repository.Repository) error {
		return repo.UpdateFeatureRunMemories(ctx, o.run, []any{memory})
	}}
}

func (o onboarding) passPlan() persistencetest.Step {
	return persistencetest.Step{Name: "pass plan", Run: func(ctx context.Context, repo *repository.Repository) error {
		return repo.PassPhaseResult(ctx, o.phase, map[string]any{"steps": 3})
	}}
}

func (o onboarding) complete() persistencetest.Step {
	return persistencetest.Step{Name: "complete", Run: func(ctx context.Context, repo *repository.Repository) error {
		return repo.CompleteFeatureRun(ctx, o.run)
	}}
}

func (o onboarding) steps() []persistencetest.Step {
	return []persistencetest.Step{
		o.createRun(), o.startPlan(), o.invokePlanner(o.invocation),
		o.remember("uses Go modules"), o.passPlan(), o.complete(),
	}
}

// modes are the default modes, as failure messages name them.
var modes = []string{
	"each step runs twice in a row",
	"each step runs on 8 goroutines at once",
	"a crash after a step's writes resumes at that step",
	zombieMode,
}

// zombieMode is the zombie mode, as failure messages name it.
const zombieMode = "each step runs again as a zombie after each later step"

func TestRequireReplaySafePassesReplaySafeSteps(t *testing.T) {
	t.Parallel()
	failed, msgs := runFake(t, func(tb testing.TB) {
		persistencetest.RequireReplaySafe(tb, persistencetest.Open, newOnboarding("evt-ok").steps(), persistencetest.ReplayFromStart())
	})
	if failed {
		t.Fatalf("replay-safe steps failed:\n%s", strings.Join(msgs, "\n"))
	}
}

// TestRequireReplaySafeCatches runs workflows each broken in one step the
// way the package's users break theirs, and checks that every default mode
// fails, with a message naming the mode and the step and showing what
// differs.
func TestRequireReplaySafeCatches(t *testing.T) {
	t.Parallel()
	o := newOnboarding("evt-broken")
	steps := o.steps()
	cases := []struct {
		name string
		// step replaces steps[at], or is inserted before it.
		at     int
		insert bool
		step   persistencetest.Step
		// want are in every mode's message.
		want []string
	}{
		{
			name: "an ID from uuid.New()",
			at:   2,
			step: persistencetest.Step{Name: "invoke planner", Run: func(ctx context.Context, repo *repository.Repository) error {
				_, err := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{
					ID: uuid.New(), FeatureRunID: o.run, PhaseResultID: &o.phase, Agent: "planner", Model: "claude-opus-4",
				})
				return err
			}},
			want: []string{
				`step 3 of 6, "invoke planner"`,
				"only in clean run, beside",
				"only in replay",
				"every other column is equal: the same row under another key, as when an ID comes from uuid.New()",
			},
		},
		{
			name: "a clock reading as a memory",
			at:   3,
			step: persistencetest.Step{Name: "remember", Run: func(ctx context.Context, repo *repository.Repository) error {
				return repo.UpdateFeatureRunMemories(ctx, o.run, []any{"checked at " + time.Now().Format(time.RFC3339Nano)})
			}},
			want: []string{
				`step 4 of 6, "remember"`,
				"feature_runs " + o.run.String() + ": differs",
				`memories   ["checked at 20`,
			},
		},
		{
			name:   "a raw update that is not idempotent",
			at:     1,
			insert: true,
			step: persistencetest.Step{Name: "tag phase", Run: func(ctx context.Context, repo *repository.Repository) error {
				return repo.DB().WithContext(ctx).Exec("UPDATE feature_runs SET phase = phase || 'x' WHERE id = ?", o.run).Error
			}},
			want: []string{
				`step 2 of 7, "tag phase"`,
				"feature_runs " + o.run.String() + ": differs",
				`"planx"`,
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			broken := append([]persistencetest.Step(nil), steps...)
			if c.insert {
				broken = slices.Insert(broken, c.at, c.step)
			} else {
				broken[c.at] = c.step
			}
			failed, msgs := runFake(t, func(tb testing.TB) {
				persistencetest.RequireReplaySafe(tb, persistencetest.Open, broken)
			})
			if !failed {
				t.Fatal("RequireReplaySafe passed the broken steps")
			}
			if len(msgs) != len(modes) {
				t.Fatalf("%d failures, want one per mode (%d):\n%s", len(msgs), len(modes), strings.Join(msgs, "\n\n"))
			}
			for i, msg := range msgs {
				for _, want := range append([]string{"not replay-safe when " + modes[i]}, c.want...) {
					if !strings.Contains(msg, want) {
						t.Errorf("failure %d lacks %q:\n%s", i+1, want, msg)
					}
				}
			}
			t.Logf("the first failure:\n%s", msgs[0])
		})
	}
}

// TestReplayFromStartCatchesWhatResumingDoesNot: a step that moves the run
// to a phase is safe to run again at once, but not after the run
// completed, which only a replay from the first step does.
func TestReplayFromStartCatchesWhatResumingDoesNot(t *testing.T) {
	t.Parallel()
	o := newOnboarding("evt-replay")
	steps := []persistencetest.Step{
		o.createRun(),
		{Name: "enter implement", Run: func(ctx context.Context, repo *repository.Repository) error {
			return repo.UpdateFeatureRunPhase(ctx, o.run, "implement")
		}},
		{Name: "enter review", Run: func(ctx context.Context, repo *repository.Repository) error {
			return repo.UpdateFeatureRunPhase(ctx, o.run, "review")
		}},
		o.complete(),
	}
	// Unfenced, the zombie mode fails the phase moves too (see
	// TestZombieModeCatchesUnfencedMoves); the other modes pass them.
	if failed, msgs := runFake(t, func(tb testing.TB) {
		persistencetest.RequireReplaySafe(tb, persistencetest.Open, steps, persistencetest.NoZombies())
	}); failed {
		t.Fatalf("the default modes failed:\n%s", strings.Join(msgs, "\n"))
	}
	failed, msgs := runFake(t, func(tb testing.TB) {
		persistencetest.RequireReplaySafe(tb, persistencetest.Open, steps, persistencetest.ReplayFromStart(), persistencetest.NoZombies())
	})
	want := `persistencetest: not replay-safe when a crash after a step's writes replays from the first step: crashed after step 4 of 4, "complete", then step 2 of 4, "enter implement", returned: ` +
		"update feature run " + o.run.String() + " phase: invalid transition"
	if !failed || len(msgs) != 1 || !strings.HasPrefix(msgs[0], want) {
		t.Fatalf("got failures %q, want one starting %q", msgs, want)
	}

	// Fenced, each replayed move finds the run moved at a later step, and
	// changes nothing.
	if failed, msgs := runFake(t, func(tb testing.TB) {
		persistencetest.RequireReplaySafe(tb, persistencetest.Open, steps, persistencetest.ReplayFromStart(), persistencetest.FenceSteps())
	}); failed {
		t.Fatalf("fenced, replaying from the first step failed:\n%s", strings.Join(msgs, "\n"))
	}
}

// TestConcurrentModeCatchesCheckThenCreate: a step that creates a phase
// result under an ID the package generates, unless the run has one, is
// safe to run again, and its row compares equal across databases although
// its ID differs; but copies of it racing each find none and each create
// one.
func TestConcurrentModeCatchesCheckThenCreate(t *testing.T) {
	t.Parallel()
	o := newOnboarding("evt-check-then-create")
	var checked checkpoint
	steps := []persistencetest.Step{o.createRun(), {Name: "start plan once", Run: func(ctx context.Context, repo *repository.Repository) error {
		var n int64
		if err := repo.DB().WithContext(ctx).Table("phase_results").Where("feature_run_id = ?", o.run).Count(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		// The other copies, if any, check too before this one creates.
		checked.wait(persistencetest.Copies)
		_, err := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{FeatureRunID: o.run, Phase: "plan"})
		return err
	}}}
	failed, msgs := runFake(t, func(tb testing.TB) {
		persistencetest.RequireReplaySafe(tb, persistencetest.Open, steps)
	})
	if !failed || len(msgs) != 1 || !strings.Contains(msgs[0], "not replay-safe when "+modes[1]+`: after step 2 of 2, "start plan once", ran on 8 goroutines`) ||
		!strings.Contains(msgs[0], "phase_results <generated #2>: only in replay") {
		t.Fatalf("got failures %q, want one, of the concurrent mode", msgs)
	}
	t.Logf("the failure:\n%s", msgs[0])
}

// checkpoint holds the copies of a step that reach it until n have, such
// as the persistencetest.Copies that RequireReplaySafe runs at once. A
// copy that stays alone there for a while runs in one of the modes that
// run a step by itself, and goes on.
// Once two copies wait, they are the concurrent mode's, and wait for the
// rest, up to 30 s, however long the machine takes to start them.
type checkpoint struct {
	mu      sync.Mutex
	waiting int
	full    chan struct{}
}

func (c *checkpoint) wait(n int) {
	c.mu.Lock()
	if c.full == nil {
		c.full = make(chan struct{})
	}
	full := c.full
	c.waiting++
	if c.waiting == n {
		close(full)
		c.waiting, c.full = 0, nil
	}
	c.mu.Unlock()
	select {
	case <-full:
		return
	case <-time.After(100 * time.Millisecond):
	}
	c.mu.Lock()
	if c.full == full && c.waiting == 1 {
		c.waiting, c.full = 0, nil
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	// Bounded, so that a copy that came too late fails the test rather
	// than hang it.
	select {
	case <-full:
	case <-time.After(30 * time.Second):
	}
}

func TestRequireReplaySafeReportsErrors(t *testing.T) {
	t.Parallel()
	o := newOnboarding("evt-errors")
	var calls atomic.Int64
	steps := []persistencetest.Step{o.createRun(), {Name: "flaky", Run: func(context.Context, *repository.Repository) error {
		if calls.Add(1) > 1 {
			return errors.New("connection reset")
		}
		return nil
	}}}
	failed, msgs := runFake(t, func(tb testing.TB) {
		persistencetest.RequireReplaySafe(tb, persistencetest.Open, steps)
	})
	wants := []string{
		`persistencetest: not replay-safe when each step runs twice in a row: step 2 of 2, "flaky", returned an error on execution 1: connection reset`,
		`persistencetest: not replay-safe when each step runs on 8 goroutines at once: step 2 of 2, "flaky", returned errors: connection reset (8 of 8)`,
		`persistencetest: not replay-safe when a crash after a step's writes resumes at that step: crashed after step 1 of 2, "create run", then step 2 of 2, "flaky", returned: connection reset`,
		`persistencetest: not replay-safe when ` + zombieMode + `: with zombies of step 1 of 2, "create run", step 2 of 2, "flaky", returned: connection reset`,
	}
	if !failed || !slices.Equal(msgs, wants) {
		t.Fatalf("got failures %q, want %q", msgs, wants)
	}

	failed, msgs = runFake(t, func(tb testing.TB) {
		persistencetest.RequireReplaySafe(tb, persistencetest.Open, []persistencetest.Step{{Name: "broken", Run: func(context.Context, *repository.Repository) error {
			panic("nil map")
		}}})
	})
	want := `persistencetest: the clean run failed: step 1 of 1, "broken", returned: panic: nil map`
	if !failed || len(msgs) != 1 || msgs[0] != want {
		t.Fatalf("got failures %q, want %q", msgs, want)
	}
}

// shortWorkloadSteps is how many steps of each generated feature run
// TestRequireReplaySafeOnWorkload runs under -short.
const shortWorkloadSteps = 40

// TestRequireReplaySafeOnWorkload runs generated feature runs of
// internal/workload, 80 steps each (the first shortWorkloadSteps under
// -short), under every mode.
func TestRequireReplaySafeOnWorkload(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		seed int64
		// mode is how workload.Check judges the steps' errors: a replay
		// from the first step runs steps after later ones, where it
		// accepts refusals it does not in order.
		mode workload.Mode
		opts []persistencetest.Option
	}{
		// The workload pauses and resumes a sandbox and moves the run
		// through five phases, as a workflow on a durable engine does with
		// each step's writes fenced. Unfenced, only the zombie mode fails
		// it, as a zombie of a phase move lands after a later one.
		{1, workload.InOrder, []persistencetest.Option{persistencetest.FenceSteps()}},
		{2, workload.InOrder, []persistencetest.Option{persistencetest.NoZombies()}},
		{3, workload.Replay, []persistencetest.Option{persistencetest.ReplayFromStart(), persistencetest.FenceSteps()}},
	} {
		t.Run(fmt.Sprint(c.seed), func(t *testing.T) {
			if testing.Short() && c.seed != 1 {
				t.Skip("skipping under -short: seed 1 is enough for a quick check")
			}
			t.Parallel()
			generated := workload.Generate(c.seed, fmt.Sprintf("kit-%d", c.seed))
			if testing.Short() {
				// Its first steps, a workflow too: the zombie mode runs
				// the steps once for each step, so half the steps take
				// a quarter of the time.
				generated = generated[:shortWorkloadSteps]
			}
			steps := make([]persistencetest.Step, len(generated))
			for i, s := range generated {
				steps[i] = persistencetest.Step{Name: s.Name, Run: func(ctx context.Context, repo *repository.Repository) error {
					return workload.Exec(ctx, repo, s, c.mode)
				}}
			}
			persistencetest.RequireReplaySafe(t, persistencetest.Open, steps, append(c.opts, persistencetest.CompareTimes("expires_at"))...)
		})
	}
}

// TestRequireReplaySafeOnPostgres runs a replay-safe workflow, a fenced
// one that moves a phase and a sandbox, and a broken one on PostgreSQL,
// side by side: each opens a schema of its own for every run.
func TestRequireReplaySafeOnPostgres(t *testing.T) {
	t.Parallel()
	dbtest.PostgresServer(t) // skips, or fails under CI, without a server
	open := func(tb testing.TB) *gorm.DB { return persistencetest.OpenPostgres(tb, dbtest.PostgresDSN()) }
	o := newOnboarding("evt-pg")
	t.Run("replay-safe", func(t *testing.T) {
		t.Parallel()
		persistencetest.RequireReplaySafe(t, open, o.steps())
	})
	t.Run("fenced", func(t *testing.T) {
		t.Parallel()
		persistencetest.RequireReplaySafe(t, open, moveSteps("evt-pg-moves", "plan", "create", "running", "paused", "running", "implement", "review", "stopped"), persistencetest.FenceSteps())
	})
	t.Run("broken", func(t *testing.T) {
		t.Parallel()
		broken := o.steps()
		broken[3].Run = func(ctx context.Context, repo *repository.Repository) error {
			return repo.UpdateFeatureRunMemories(ctx, o.run, []any{"at " + time.Now().String()})
		}
		failed, msgs := runFake(t, func(tb testing.TB) { persistencetest.RequireReplaySafe(tb, open, broken) })
		if !failed || len(msgs) != len(modes) || !strings.Contains(msgs[0], `after step 4 of 6, "remember", ran twice`) {
			t.Fatalf("got failures %q", msgs)
		}
	})
}

// TestRequireReplaySafeInSchema runs a fenced workflow and a broken one
// in a tenant schema, on PostgreSQL and MariaDB: the fenced one passes,
// and the broken one is caught, which only reading the tenant's tables
// can show.
func TestRequireReplaySafeInSchema(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		open func(tb testing.TB) *gorm.DB
	}{
		{"postgres", func(tb testing.TB) *gorm.DB {
			dbtest.PostgresServer(tb)
			return persistencetest.OpenPostgres(tb, dbtest.PostgresDSN())
		}},
		{"mariadb", func(tb testing.TB) *gorm.DB {
			dbtest.MariaDBServer(tb)
			return persistencetest.OpenMariaDB(tb, dbtest.MariaDBDSN())
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			inSchema := persistencetest.InSchema("tenant")
			persistencetest.RequireReplaySafe(t, c.open, moveSteps("evt-tenant-moves", "create", "running", "stopped"), persistencetest.FenceSteps(), inSchema)

			broken := moveSteps("evt-tenant-broken", "create")
			broken = append(broken, persistencetest.Step{Name: "remember", Run: func(ctx context.Context, repo *repository.Repository) error {
				return repo.UpdateFeatureRunMemories(ctx, repository.StableID("evt-tenant-broken", "run"), []any{"at " + time.Now().String()})
			}})
			failed, msgs := runFake(t, func(tb testing.TB) {
				persistencetest.RequireReplaySafe(tb, c.open, broken, inSchema, persistencetest.NoZombies())
			})
			if !failed || len(msgs) == 0 || !strings.Contains(msgs[0], `after step 3 of 3, "remember", ran twice`) {
				t.Fatalf("got failures %q", msgs)
			}
		})
	}
}

// moveSteps returns the steps of a workflow triggered by event: "create
// run", in phase intake, then one step per move, each making its one write
// through the repo it is given. A move is "create" (the sandbox), a
// sandbox status, or else a phase.
func moveSteps(event string, moves ...string) []persistencetest.Step {
	run := repository.StableID(event, "run")
	sandbox := "sbx-" + repository.StableID(event, "sandbox").String()[:8]
	steps := []persistencetest.Step{{Name: "create run", Run: func(ctx context.Context, repo *repository.Repository) error {
		_, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: run, Phase: "intake"})
		return err
	}}}
	for _, m := range moves {
		var write func(ctx context.Context, repo *repository.Repository) error
		switch status := models.SandboxStatus(m); status {
		case "create":
			m = "create sandbox"
			write = func(ctx context.Context, repo *repository.Repository) error {
				return repo.CreateSandboxRecord(ctx, repository.NewSandbox{ID: sandbox, FeatureRunID: run, Provider: "e2b"})
			}
		case models.SandboxRunning, models.SandboxPaused, models.SandboxStopped:
			m = "sandbox " + m
			write = func(ctx context.Context, repo *repository.Repository) error {
				return repo.UpdateSandboxStatus(ctx, sandbox, status)
			}
		default:
			phase := m
			m = "phase " + m
			write = func(ctx context.Context, repo *repository.Repository) error {
				return repo.UpdateFeatureRunPhase(ctx, run, phase)
			}
		}
		steps = append(steps, persistencetest.Step{Name: m, Run: write})
	}
	return steps
}

// TestZombieModeCatchesUnfencedMoves runs workflows whose steps move a
// run's phase and a sandbox's status: a zombie of an earlier move takes
// its row back, unless the steps are fenced or the mode is off.
func TestZombieModeCatchesUnfencedMoves(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		moves []string
		// want are in the zombie mode's failure message, unfenced.
		want []string
	}{
		{
			name:  "phases",
			moves: []string{"plan", "create", "running", "paused", "running", "implement", "review", "stopped"},
			want: []string{
				`not replay-safe when ` + zombieMode + `: step 2 of 9, "phase plan", ran again after step 7 of 9, "phase implement", the database differs from the clean run's in 1 row:`,
				"feature_runs " + repository.StableID("evt-zombie-phases", "run").String() + ": differs\n",
				"\n    column   clean run     zombie\n",
				"\n    phase    \"implement\"   \"plan\"\n",
				"(FenceSteps() does that here).",
			},
		},
		{
			name:  "sandbox",
			moves: []string{"plan", "create", "running", "paused", "running", "paused"},
			want: []string{
				`not replay-safe when ` + zombieMode + `: step 4 of 7, "sandbox running", ran again after step 5 of 7, "sandbox paused", the database differs from the clean run's in 1 row:`,
				`sandboxes "sbx-` + repository.StableID("evt-zombie-sandbox", "sandbox").String()[:8] + `": differs` + "\n",
				"\n    status   \"paused\"    \"running\"\n",
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			steps := moveSteps("evt-zombie-"+c.name, c.moves...)
			failed, msgs := runFake(t, func(tb testing.TB) {
				persistencetest.RequireReplaySafe(tb, persistencetest.Open, steps)
			})
			if !failed || len(msgs) != 1 {
				t.Fatalf("unfenced: got failures %q, want one, of the zombie mode", msgs)
			}
			for _, want := range c.want {
				if !strings.Contains(msgs[0], want) {
					t.Errorf("the failure lacks %q:\n%s", want, msgs[0])
				}
			}
			t.Logf("the failure:\n%s", msgs[0])

			if failed, msgs := runFake(t, func(tb testing.TB) {
				persistencetest.RequireReplaySafe(tb, persistencetest.Open, steps, persistencetest.FenceSteps())
			}); failed {
				t.Errorf("fenced, the steps failed:\n%s", strings.Join(msgs, "\n"))
			}
			if failed, msgs := runFake(t, func(tb testing.TB) {
				persistencetest.RequireReplaySafe(tb, persistencetest.Open, steps, persistencetest.NoZombies())
			}); failed {
				t.Errorf("unfenced without the zombie mode, the steps failed:\n%s", strings.Join(msgs, "\n"))
			}
		})
	}
}

// TestZombieModeIgnoresTheZombiesError: a zombie's error reaches nobody,
// so a step that refuses to run again after the last step passes, as long
// as it changes nothing.
func TestZombieModeIgnoresTheZombiesError(t *testing.T) {
	t.Parallel()
	o := newOnboarding("evt-zombie-error")
	// Once the run completed, "enter implement" returns
	// ErrInvalidTransition.
	steps := []persistencetest.Step{o.createRun(), {Name: "enter implement", Run: func(ctx context.Context, repo *repository.Repository) error {
		return repo.UpdateFeatureRunPhase(ctx, o.run, "implement")
	}}, o.complete()}
	if failed, msgs := runFake(t, func(tb testing.TB) {
		persistencetest.RequireReplaySafe(tb, persistencetest.Open, steps)
	}); failed {
		t.Fatalf("the zombie's refusal failed the steps:\n%s", strings.Join(msgs, "\n"))
	}
}

// TestFenceStepsGivesEachStepItsPosition checks, through the fence, that
// FenceSteps makes step 2's writes at 2: a zombie of it is fenced by a
// later move at 3, and not by one at 2, since only a move at a later step
// supersedes it.
func TestFenceStepsGivesEachStepItsPosition(t *testing.T) {
	t.Parallel()
	o := newOnboarding("evt-positions")
	enterImplement := persistencetest.Step{Name: "enter implement", Run: func(ctx context.Context, repo *repository.Repository) error {
		return repo.UpdateFeatureRunPhase(ctx, o.run, "implement")
	}}
	enterReviewAt := func(step int64) persistencetest.Step {
		return persistencetest.Step{Name: "enter review", Run: func(ctx context.Context, repo *repository.Repository) error {
			return repo.AtStep(step).UpdateFeatureRunPhase(ctx, o.run, "review")
		}}
	}
	failed, msgs := runFake(t, func(tb testing.TB) {
		steps := []persistencetest.Step{o.createRun(), enterImplement, enterReviewAt(2)}
		persistencetest.RequireReplaySafe(tb, persistencetest.Open, steps, persistencetest.FenceSteps())
	})
	want := `not replay-safe when ` + zombieMode + `: step 2 of 3, "enter implement", ran again after step 3 of 3, "enter review"`
	if !failed || len(msgs) != 1 || !strings.Contains(msgs[0], want) || !strings.Contains(msgs[0], "A step that calls AtStep itself must pass its own position.") {
		t.Fatalf("got failures %q, want one containing %q", msgs, want)
	}
	if failed, msgs := runFake(t, func(tb testing.TB) {
		steps := []persistencetest.Step{o.createRun(), enterImplement, enterReviewAt(3)}
		persistencetest.RequireReplaySafe(tb, persistencetest.Open, steps, persistencetest.FenceSteps())
	}); failed {
		t.Fatalf("with the review at 3, the steps failed:\n%s", strings.Join(msgs, "\n"))
	}
}
