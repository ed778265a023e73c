package reliability_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/internal/latewrites"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// rows is one row of each table, each in its initial state, and the ID of
// a run that does not exist yet.
type rows struct {
	run, newRun, phase, invocation uuid.UUID
	sandbox, cta                   string
}

func newRows(t *testing.T, ctx context.Context, repo *repository.Repository, key string) rows {
	t.Helper()
	f, err := makeRows(ctx, repo, key)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// makeRows is newRows for a goroutine other than the test's: it returns
// the error that newRows fails the test with.
func makeRows(ctx context.Context, repo *repository.Repository, key string) (rows, error) {
	f := rows{
		run:        repository.StableID(key, "run"),
		newRun:     repository.StableID(key, "new run"),
		phase:      repository.StableID(key, "phase"),
		invocation: repository.StableID(key, "invocation"),
		sandbox:    "sbx-" + key,
		cta:        "cta-" + key,
	}
	_, err1 := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: f.run, Phase: "plan", Memories: []any{"first"}})
	_, err2 := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: f.phase, FeatureRunID: f.run, Phase: "plan"})
	_, err3 := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{ID: f.invocation, FeatureRunID: f.run, Agent: "coder"})
	err4 := repo.CreateSandboxRecord(ctx, repository.NewSandbox{ID: f.sandbox, FeatureRunID: f.run})
	err5 := repo.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: f.cta, FeatureRunID: f.run})
	return f, errors.Join(err1, err2, err3, err4, err5)
}

// blocked is a write and the row another transaction locks to block it.
type blocked struct {
	name string
	// lock is the statement that takes the lock, with the row's ID as its
	// one var.
	lock string
	id   func(f rows) any
	call func(ctx context.Context, r *repository.Repository, f rows) error
}

// The statements that take the locks, in GORM's placeholders, which it
// renders for each database.
const (
	lockRun        = `SELECT 1 FROM feature_runs WHERE id = ? FOR UPDATE`
	lockSandbox    = `SELECT 1 FROM sandboxes WHERE id = ? FOR UPDATE`
	lockPhase      = `SELECT 1 FROM phase_results WHERE id = ? FOR UPDATE`
	lockInvocation = `SELECT 1 FROM agent_invocations WHERE id = ? FOR UPDATE`
	lockCTA        = `SELECT 1 FROM cta_events WHERE id = ? FOR UPDATE`
	// insertRun inserts, uncommitted, the run a create is about to insert:
	// the create waits to learn whether the key will exist.
	insertRun = `INSERT INTO feature_runs (id, phase, status, memories, created_at, updated_at) VALUES (?, 'blocker', 'running', '[]', now(), now())`
)

// blockedWrites are the fifteen writes. A create of a child waits for the
// run it names, whose foreign key check needs a lock that FOR UPDATE
// excludes; a transition waits for its row.
func blockedWrites() []blocked {
	run := func(f rows) any { return f.run }
	return []blocked{
		{"CreateFeatureRun", insertRun, func(f rows) any { return f.newRun }, func(ctx context.Context, r *repository.Repository, f rows) error {
			_, err := r.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: f.newRun, Phase: "plan"})
			return err
		}},
		{"UpdateFeatureRunPhase", lockRun, run, func(ctx context.Context, r *repository.Repository, f rows) error {
			return r.UpdateFeatureRunPhase(ctx, f.run, "implement")
		}},
		{"UpdateFeatureRunMemories", lockRun, run, func(ctx context.Context, r *repository.Repository, f rows) error {
			return r.UpdateFeatureRunMemories(ctx, f.run, []any{"first", "second"})
		}},
		{"CompleteFeatureRun", lockRun, run, func(ctx context.Context, r *repository.Repository, f rows) error {
			return r.CompleteFeatureRun(ctx, f.run)
		}},
		{"FailFeatureRun", lockRun, run, func(ctx context.Context, r *repository.Repository, f rows) error {
			return r.FailFeatureRun(ctx, f.run)
		}},
		{"CreateSandboxRecord", lockRun, run, func(ctx context.Context, r *repository.Repository, f rows) error {
			return r.CreateSandboxRecord(ctx, repository.NewSandbox{ID: f.sandbox + "-2", FeatureRunID: f.run})
		}},
		{"UpdateSandboxStatus", lockSandbox, func(f rows) any { return f.sandbox }, func(ctx context.Context, r *repository.Repository, f rows) error {
			return r.UpdateSandboxStatus(ctx, f.sandbox, models.SandboxRunning)
		}},
		{"CreatePhaseResult", lockRun, run, func(ctx context.Context, r *repository.Repository, f rows) error {
			_, err := r.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: uuid.New(), FeatureRunID: f.run, Phase: "test"})
			return err
		}},
		{"PassPhaseResult", lockPhase, func(f rows) any { return f.phase }, func(ctx context.Context, r *repository.Repository, f rows) error {
			return r.PassPhaseResult(ctx, f.phase, map[string]any{"ok": true})
		}},
		{"FailPhaseResult", lockPhase, func(f rows) any { return f.phase }, func(ctx context.Context, r *repository.Repository, f rows) error {
			return r.FailPhaseResult(ctx, f.phase)
		}},
		{"CreateAgentInvocation", lockRun, run, func(ctx context.Context, r *repository.Repository, f rows) error {
			_, err := r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{ID: uuid.New(), FeatureRunID: f.run, PhaseResultID: &f.phase, Agent: "tester"})
			return err
		}},
		{"CompleteAgentInvocation", lockInvocation, func(f rows) any { return f.invocation }, func(ctx context.Context, r *repository.Repository, f rows) error {
			return r.CompleteAgentInvocation(ctx, f.invocation, repository.InvocationResult{Steps: []any{"s"}, InputTokens: 10, OutputTokens: 5, CostNanoUSD: 7})
		}},
		{"CreateCTAEvent", lockRun, run, func(ctx context.Context, r *repository.Repository, f rows) error {
			return r.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: f.cta + "-2", FeatureRunID: f.run, Kind: "approval"})
		}},
		{"CompleteCTAEvent", lockCTA, func(f rows) any { return f.cta }, func(ctx context.Context, r *repository.Repository, f rows) error {
			return r.CompleteCTAEvent(ctx, f.cta, "yes")
		}},
		{"TimeoutCTAEvent", lockCTA, func(f rows) any { return f.cta }, func(ctx context.Context, r *repository.Repository, f rows) error {
			return r.TimeoutCTAEvent(ctx, f.cta)
		}},
	}
}

// TestDeadlines gives each write a context that expires while its
// statement waits for a lock another transaction holds for 3 s, on
// each server (SQLite has one connection, which the lock would hold). The
// write must return an error matching context.DeadlineExceeded at its
// deadline, not when the lock is released, and leave nothing behind once
// the lock is released; retried afterwards, it succeeds.
func TestDeadlines(t *testing.T) {
	const (
		deadline = 200 * time.Millisecond
		// The write returns once the server answered its stop request,
		// which on a machine busy with the rest of the suite took up to
		// 1.7 s (TestLateWrites' max lag): slack allows that, and hold
		// outlasts it, so that a write that waited for the lock still
		// fails the test.
		hold  = 3 * time.Second
		slack = 2 * time.Second
		// settle is how long after the release the rows are read, so that
		// a statement the server still ran once it got the lock is seen.
		settle = 200 * time.Millisecond
	)
	if testing.Short() {
		t.Skip("skipping under -short: each of the 15 writes waits on a lock held for 3 s")
	}
	for _, d := range servers {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			db := d.Open(t)
			if err := migrate.Up(t.Context(), db); err != nil {
				t.Fatalf("migrate: %v", err)
			}
			repo := repository.New(db)
			for _, w := range blockedWrites() {
				t.Run(w.name, func(t *testing.T) {
					t.Parallel()
					ctx := t.Context()
					f := newRows(t, ctx, repo, "deadline-"+w.name)
					before := takeSnapshot(t, ctx, db, f.run)

					tx, err := latewrites.HoldLock(ctx, db, w.lock, w.id(f))
					if err != nil {
						t.Fatalf("take the lock: %v", err)
					}
					released := make(chan error, 1)
					go func() {
						time.Sleep(hold)
						released <- tx.Rollback().Error
					}()

					wctx, cancel := context.WithTimeout(ctx, deadline)
					start := time.Now()
					err = w.call(wctx, repo, f)
					elapsed := time.Since(start)
					cancel()
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("got %v, want an error matching context.DeadlineExceeded", err)
					}
					if elapsed > deadline+slack {
						t.Errorf("returned after %v, past its deadline of %v", elapsed, deadline)
					}
					t.Logf("returned after %v with: %v", elapsed.Round(time.Millisecond), err)
					if err := <-released; err != nil {
						t.Fatalf("blocker: %v", err)
					}
					time.Sleep(settle)
					requireSame(t, before, takeSnapshot(t, ctx, db, f.run), "once the lock is released")
					requireSame(t, snapshot{}, takeSnapshot(t, ctx, db, f.newRun), "the run the create named")

					if err := w.call(ctx, repo, f); err != nil {
						t.Fatalf("retried without a deadline: %v", err)
					}
					if len(diff(before, takeSnapshot(t, ctx, db, f.run)))+takeSnapshot(t, ctx, db, f.newRun).rows() == 0 {
						t.Error("the retried write changed nothing")
					}
				})
			}
		})
	}
}
