package stack_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// A path is one way a write can go.
type path string

const (
	happy   path = "happy"   // the write changes a row or inserts one
	replay  path = "replay"  // the row is already as asked
	refused path = "refused" // the row's state forbids the write
	missing path = "missing" // the row, or a parent it names, does not exist
)

// call is a write to make on a path, against a Repository that may differ
// from the one that prepared its rows.
type call func(ctx context.Context, r *repository.Repository) error

// write is one of the fifteen writes of the contract. Each path prepares,
// with a plain Repository, the rows it needs and returns the call; a write
// lacks the paths it cannot take (a create is never refused).
type write struct {
	name  string
	paths map[path]func(f *fixture) call
}

// fixture prepares rows for the paths of the writes.
type fixture struct {
	t    testing.TB
	ctx  context.Context
	repo *repository.Repository
}

func (f *fixture) run(status models.RunStatus) uuid.UUID {
	id, err := f.repo.CreateFeatureRun(f.ctx, repository.NewFeatureRun{ID: uuid.New(), Phase: "plan", Memories: []any{"known"}})
	require.NoError(f.t, err)
	switch status {
	case models.RunCompleted:
		require.NoError(f.t, f.repo.CompleteFeatureRun(f.ctx, id))
	case models.RunFailed:
		require.NoError(f.t, f.repo.FailFeatureRun(f.ctx, id))
	}
	return id
}

func (f *fixture) sandbox(moves ...models.SandboxStatus) string {
	id := "sbx-" + uuid.NewString()
	require.NoError(f.t, f.repo.CreateSandboxRecord(f.ctx, repository.NewSandbox{ID: id, FeatureRunID: f.run(models.RunRunning), Provider: "e2b-vm"}))
	for _, s := range moves {
		require.NoError(f.t, f.repo.UpdateSandboxStatus(f.ctx, id, s))
	}
	return id
}

func (f *fixture) phase(pass *bool) uuid.UUID {
	id, err := f.repo.CreatePhaseResult(f.ctx, repository.NewPhaseResult{ID: uuid.New(), FeatureRunID: f.run(models.RunRunning), Phase: "plan"})
	require.NoError(f.t, err)
	switch {
	case pass == nil:
	case *pass:
		require.NoError(f.t, f.repo.PassPhaseResult(f.ctx, id, map[string]any{"ok": true}))
	default:
		require.NoError(f.t, f.repo.FailPhaseResult(f.ctx, id))
	}
	return id
}

func (f *fixture) invocation(done *bool) uuid.UUID {
	id, err := f.repo.CreateAgentInvocation(f.ctx, repository.NewAgentInvocation{ID: uuid.New(), FeatureRunID: f.run(models.RunRunning), Agent: "coder"})
	require.NoError(f.t, err)
	switch {
	case done == nil:
	case *done:
		require.NoError(f.t, f.repo.CompleteAgentInvocation(f.ctx, id, result))
	default:
		require.NoError(f.t, f.repo.FailAgentInvocation(f.ctx, id, result, "boom"))
	}
	return id
}

func (f *fixture) cta(answer *bool) string {
	id := "cta-" + uuid.NewString()
	require.NoError(f.t, f.repo.CreateCTAEvent(f.ctx, repository.NewCTAEvent{ID: id, FeatureRunID: f.run(models.RunRunning), Kind: "approval"}))
	switch {
	case answer == nil:
	case *answer:
		require.NoError(f.t, f.repo.CompleteCTAEvent(f.ctx, id, response))
	default:
		require.NoError(f.t, f.repo.TimeoutCTAEvent(f.ctx, id))
	}
	return id
}

// Arguments that carry values a log must not show with ParameterizedQueries.
var (
	secret   = "hunter2-do-not-log"
	response = map[string]any{"password": secret}
	result   = repository.InvocationResult{Output: secret, InputTokens: 1, OutputTokens: 2, CostNanoUSD: 3}
)

var (
	yes = true
	no  = false
)

// writes returns the fifteen writes with their paths.
func writes() []write {
	return []write{
		{"CreateFeatureRun", map[path]func(*fixture) call{
			happy: func(*fixture) call { return createRun(uuid.New()) },
			replay: func(f *fixture) call {
				id := uuid.New()
				require.NoError(f.t, createRun(id)(f.ctx, f.repo))
				return createRun(id)
			},
		}},
		{"UpdateFeatureRunPhase", transitions(
			func(f *fixture) uuid.UUID { return f.run(models.RunRunning) },
			func(f *fixture) uuid.UUID { return f.run(models.RunCompleted) },
			func(ctx context.Context, r *repository.Repository, id uuid.UUID, p path) error {
				phase := "review"
				if p == replay {
					phase = "plan"
				}
				return r.UpdateFeatureRunPhase(ctx, id, phase)
			})},
		{"UpdateFeatureRunMemories", transitions(
			func(f *fixture) uuid.UUID { return f.run(models.RunRunning) },
			func(f *fixture) uuid.UUID { return f.run(models.RunFailed) },
			func(ctx context.Context, r *repository.Repository, id uuid.UUID, p path) error {
				value := any("learned")
				if p == replay {
					value = "known"
				}
				return r.UpdateFeatureRunMemories(ctx, id, []any{value})
			})},
		{"CompleteFeatureRun", transitions(
			func(f *fixture) uuid.UUID { return f.run(models.RunRunning) },
			func(f *fixture) uuid.UUID { return f.run(models.RunFailed) },
			func(ctx context.Context, r *repository.Repository, id uuid.UUID, _ path) error {
				return r.CompleteFeatureRun(ctx, id)
			})},
		{"FailFeatureRun", transitions(
			func(f *fixture) uuid.UUID { return f.run(models.RunRunning) },
			func(f *fixture) uuid.UUID { return f.run(models.RunCompleted) },
			func(ctx context.Context, r *repository.Repository, id uuid.UUID, _ path) error {
				return r.FailFeatureRun(ctx, id)
			})},
		{"CreateSandboxRecord", map[path]func(*fixture) call{
			happy: func(f *fixture) call { return createSandbox("sbx-"+uuid.NewString(), f.run(models.RunRunning)) },
			replay: func(f *fixture) call {
				c := createSandbox("sbx-"+uuid.NewString(), f.run(models.RunRunning))
				require.NoError(f.t, c(f.ctx, f.repo))
				return c
			},
			missing: func(*fixture) call { return createSandbox("sbx-"+uuid.NewString(), uuid.New()) },
		}},
		{"UpdateSandboxStatus", transitions(
			func(f *fixture) string { return f.sandbox() },
			func(f *fixture) string { return f.sandbox(models.SandboxStopped) },
			func(ctx context.Context, r *repository.Repository, id string, _ path) error {
				return r.UpdateSandboxStatus(ctx, id, models.SandboxRunning)
			})},
		{"CreatePhaseResult", map[path]func(*fixture) call{
			happy: func(f *fixture) call { return createPhase(uuid.New(), f.run(models.RunRunning)) },
			replay: func(f *fixture) call {
				c := createPhase(uuid.New(), f.run(models.RunRunning))
				require.NoError(f.t, c(f.ctx, f.repo))
				return c
			},
			missing: func(*fixture) call { return createPhase(uuid.New(), uuid.New()) },
		}},
		{"PassPhaseResult", transitions(
			func(f *fixture) uuid.UUID { return f.phase(nil) },
			func(f *fixture) uuid.UUID { return f.phase(&no) },
			func(ctx context.Context, r *repository.Repository, id uuid.UUID, _ path) error {
				return r.PassPhaseResult(ctx, id, map[string]any{"ok": true})
			})},
		{"FailPhaseResult", transitions(
			func(f *fixture) uuid.UUID { return f.phase(nil) },
			func(f *fixture) uuid.UUID { return f.phase(&yes) },
			func(ctx context.Context, r *repository.Repository, id uuid.UUID, _ path) error {
				return r.FailPhaseResult(ctx, id)
			})},
		{"CreateAgentInvocation", map[path]func(*fixture) call{
			happy: func(f *fixture) call { return createInvocation(uuid.New(), f.run(models.RunRunning)) },
			replay: func(f *fixture) call {
				c := createInvocation(uuid.New(), f.run(models.RunRunning))
				require.NoError(f.t, c(f.ctx, f.repo))
				return c
			},
			missing: func(*fixture) call { return createInvocation(uuid.New(), uuid.New()) },
		}},
		{"CompleteAgentInvocation", transitions(
			func(f *fixture) uuid.UUID { return f.invocation(nil) },
			func(f *fixture) uuid.UUID { return f.invocation(&no) },
			func(ctx context.Context, r *repository.Repository, id uuid.UUID, _ path) error {
				return r.CompleteAgentInvocation(ctx, id, result)
			})},
		{"CreateCTAEvent", map[path]func(*fixture) call{
			happy: func(f *fixture) call { return createCTA("cta-"+uuid.NewString(), f.run(models.RunRunning)) },
			replay: func(f *fixture) call {
				c := createCTA("cta-"+uuid.NewString(), f.run(models.RunRunning))
				require.NoError(f.t, c(f.ctx, f.repo))
				return c
			},
			missing: func(*fixture) call { return createCTA("cta-"+uuid.NewString(), uuid.New()) },
		}},
		{"CompleteCTAEvent", transitions(
			func(f *fixture) string { return f.cta(nil) },
			func(f *fixture) string { return f.cta(&no) },
			func(ctx context.Context, r *repository.Repository, id string, _ path) error {
				return r.CompleteCTAEvent(ctx, id, response)
			})},
		{"TimeoutCTAEvent", transitions(
			func(f *fixture) string { return f.cta(nil) },
			func(f *fixture) string { return f.cta(&yes) },
			func(ctx context.Context, r *repository.Repository, id string, _ path) error {
				return r.TimeoutCTAEvent(ctx, id)
			})},
	}
}

// transitions returns the four paths of a transition of the row fresh
// makes: happy on a fresh row, replay on a row moved by a first call,
// refused on the row final makes, missing on an ID no row has.
func transitions[ID uuid.UUID | string](fresh, final func(*fixture) ID, move func(context.Context, *repository.Repository, ID, path) error) map[path]func(*fixture) call {
	on := func(id ID, p path) call {
		return func(ctx context.Context, r *repository.Repository) error { return move(ctx, r, id, p) }
	}
	return map[path]func(*fixture) call{
		happy: func(f *fixture) call { return on(fresh(f), happy) },
		replay: func(f *fixture) call {
			c := on(fresh(f), replay)
			require.NoError(f.t, c(f.ctx, f.repo))
			return c
		},
		refused: func(f *fixture) call { return on(final(f), refused) },
		missing: func(*fixture) call {
			var id ID
			switch p := any(&id).(type) {
			case *uuid.UUID:
				*p = uuid.New()
			case *string:
				*p = "missing-" + uuid.NewString()
			}
			return on(id, missing)
		},
	}
}

func createRun(id uuid.UUID) call {
	return func(ctx context.Context, r *repository.Repository) error {
		_, err := r.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: id, Phase: "plan", Memories: []any{"m"}, Metadata: map[string]any{"k": "v"}})
		return err
	}
}

func createSandbox(id string, run uuid.UUID) call {
	return func(ctx context.Context, r *repository.Repository) error {
		return r.CreateSandboxRecord(ctx, repository.NewSandbox{ID: id, FeatureRunID: run, Provider: "e2b-vm", Metadata: map[string]any{"cpu": 2}})
	}
}

func createPhase(id, run uuid.UUID) call {
	return func(ctx context.Context, r *repository.Repository) error {
		_, err := r.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: id, FeatureRunID: run, Phase: "plan"})
		return err
	}
}

func createInvocation(id, run uuid.UUID) call {
	return func(ctx context.Context, r *repository.Repository) error {
		_, err := r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{ID: id, FeatureRunID: run, Agent: "coder", Model: "m", Input: "do it"})
		return err
	}
}

func createCTA(id string, run uuid.UUID) call {
	return func(ctx context.Context, r *repository.Repository) error {
		return r.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: id, FeatureRunID: run, Kind: "approval", RequestData: "ok?"})
	}
}

// outcome names what a call returned, comparably across databases and
// configurations: ok, not found, or the state a refusal came from.
func outcome(err error) string {
	var te *repository.TransitionError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &te):
		return "refused from " + te.From
	case errors.Is(err, repository.ErrNotFound):
		return "not found"
	}
	return "error: " + err.Error()
}

// want is the outcome each path must have.
var want = map[path]string{happy: "ok", replay: "ok", missing: "not found"}

// checkOutcome asserts that err is the outcome of path p.
func checkOutcome(t testing.TB, p path, err error) {
	t.Helper()
	got := outcome(err)
	if p == refused {
		require.ErrorIs(t, err, repository.ErrInvalidTransition, "the refused path is refused")
		return
	}
	require.Equal(t, want[p], got, "the %s path", p)
}

// each runs fn for every path of every write.
func each(t *testing.T, fn func(t *testing.T, w write, p path, prepare func(*fixture) call)) {
	for _, w := range writes() {
		for _, p := range []path{happy, replay, refused, missing} {
			if prepare, ok := w.paths[p]; ok {
				t.Run(w.name+"/"+string(p), func(t *testing.T) { fn(t, w, p, prepare) })
			}
		}
	}
}
