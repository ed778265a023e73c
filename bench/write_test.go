package bench

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/agentpipeline/persistence/internal/workload"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// call is call i of a prepared benchmark loop.
type call func(ctx context.Context, s workload.Store, i int) error

// writeCase is one contract write. happy and replay seed, outside the timed
// region, what n calls of the path need, and return the call: happy makes
// every call change a row (or insert one); replay makes every call find the
// row already as asked (an existing ID, the state the row is in, values
// already present).
type writeCase struct {
	name          string
	happy, replay func(s seeder, n int) call
	// fenced is set for a write that has a fenced form, a move made
	// through Repository.AtStep: its calls are made through it too, by
	// the side impl=fenced.
	fenced bool
}

// sides returns the sides that make w's calls on db: db's, in the order
// that order gives, and, for a write with a fenced form, impl=fenced right
// after the repository's unfenced side, so that the two run close together
// in time.
func (w writeCase) sides(db database) []string {
	if !w.fenced {
		return order(db.impls)
	}
	var sides []string
	for _, impl := range order(db.impls) {
		sides = append(sides, impl)
		if impl == implRepository {
			sides = append(sides, implFenced)
		}
	}
	return sides
}

// The arguments the writes carry: small JSON documents of the kind the
// pipeline records.
var (
	runMetadata    = map[string]any{"ticket": "FEAT-1234", "priority": 2, "labels": []any{"backend", "agent"}}
	sandboxMeta    = map[string]any{"image": "golang:1.26", "cpu": 2, "memory_mb": 4096}
	phaseOutput    = map[string]any{"summary": "plan accepted", "files": []any{"store.go", "store_test.go"}, "score": 0.93}
	invocationIn   = map[string]any{"prompt": "Implement the store", "context": []any{"issue #5"}, "temperature": 0.2}
	ctaRequest     = map[string]any{"question": "Approve the plan?", "options": []any{"yes", "no"}}
	ctaResponse    = map[string]any{"answer": "yes", "by": "reviewer@example.com"}
	invocationDone = repository.InvocationResult{
		Steps:        []any{map[string]any{"n": 1, "action": "read", "path": "store.go"}, map[string]any{"n": 2, "action": "edit", "path": "store.go"}},
		ToolCalls:    []any{map[string]any{"tool": "grep", "args": map[string]any{"pattern": "Store"}}},
		Output:       map[string]any{"diff": "+func (s *Store) Save() error", "ok": true},
		InputTokens:  1200,
		OutputTokens: 350,
		CostNanoUSD:  4_200_000,
	}
)

// storedMemories is how many memories the runs of the memory append
// benchmarks of BenchmarkWrite and BenchmarkReplay hold before it.
const storedMemories = 10

// newMemories returns, for each of n appends, two values no run holds yet.
func newMemories(n int) [][]any {
	vs := make([][]any, n)
	for i := range vs {
		vs[i] = []any{fmt.Sprintf("learned %d", i), map[string]any{"fact": "new", "n": i}}
	}
	return vs
}

var writeCases = []writeCase{
	{
		name: "CreateFeatureRun",
		happy: func(s seeder, n int) call {
			ids := newUUIDs(n)
			return func(ctx context.Context, st workload.Store, i int) error {
				_, err := st.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: ids[i], Phase: "plan", Memories: []any{"goal: ship it"}, Metadata: runMetadata})
				return err
			}
		},
		replay: func(s seeder, n int) call {
			id := s.run()
			return func(ctx context.Context, st workload.Store, i int) error {
				_, err := st.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: id, Phase: "plan", Memories: []any{"goal: ship it"}, Metadata: runMetadata})
				return err
			}
		},
	},
	{
		name:   "UpdateFeatureRunPhase",
		fenced: true,
		happy: func(s seeder, n int) call {
			ids := s.runs(n, models.RunRunning, 0)
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.UpdateFeatureRunPhase(ctx, ids[i], "implement")
			}
		},
		replay: func(s seeder, n int) call {
			id := s.run()
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.UpdateFeatureRunPhase(ctx, id, "plan")
			}
		},
	},
	{
		name: "UpdateFeatureRunMemories",
		happy: func(s seeder, n int) call {
			ids := s.runs(n, models.RunRunning, storedMemories)
			values := newMemories(n)
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.UpdateFeatureRunMemories(ctx, ids[i], values[i])
			}
		},
		replay: func(s seeder, n int) call {
			id := s.runs(1, models.RunRunning, storedMemories)[0]
			present := []any{"stored 1", "stored 2"}
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.UpdateFeatureRunMemories(ctx, id, present)
			}
		},
	},
	{
		name: "CompleteFeatureRun",
		happy: func(s seeder, n int) call {
			ids := s.runs(n, models.RunRunning, 0)
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.CompleteFeatureRun(ctx, ids[i])
			}
		},
		replay: func(s seeder, n int) call {
			id := s.runs(1, models.RunCompleted, 0)[0]
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.CompleteFeatureRun(ctx, id)
			}
		},
	},
	{
		name: "FailFeatureRun",
		happy: func(s seeder, n int) call {
			ids := s.runs(n, models.RunRunning, 0)
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.FailFeatureRun(ctx, ids[i])
			}
		},
		replay: func(s seeder, n int) call {
			id := s.runs(1, models.RunFailed, 0)[0]
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.FailFeatureRun(ctx, id)
			}
		},
	},
	{
		name: "CreateSandboxRecord",
		happy: func(s seeder, n int) call {
			run, ids := s.run(), newStrings("sb-", n)
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.CreateSandboxRecord(ctx, repository.NewSandbox{ID: ids[i], FeatureRunID: run, Provider: "e2b", Metadata: sandboxMeta})
			}
		},
		replay: func(s seeder, n int) call {
			run := s.run()
			id := s.sandboxes(run, 1, models.SandboxCreating)[0]
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.CreateSandboxRecord(ctx, repository.NewSandbox{ID: id, FeatureRunID: run, Provider: "e2b", Metadata: sandboxMeta})
			}
		},
	},
	{
		name:   "UpdateSandboxStatus",
		fenced: true,
		happy: func(s seeder, n int) call {
			ids := s.sandboxes(s.run(), n, models.SandboxCreating)
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.UpdateSandboxStatus(ctx, ids[i], models.SandboxRunning)
			}
		},
		replay: func(s seeder, n int) call {
			id := s.sandboxes(s.run(), 1, models.SandboxRunning)[0]
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.UpdateSandboxStatus(ctx, id, models.SandboxRunning)
			}
		},
	},
	{
		name: "CreatePhaseResult",
		happy: func(s seeder, n int) call {
			run, ids := s.run(), newUUIDs(n)
			return func(ctx context.Context, st workload.Store, i int) error {
				_, err := st.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: ids[i], FeatureRunID: run, Phase: "plan"})
				return err
			}
		},
		replay: func(s seeder, n int) call {
			run := s.run()
			id := s.phases(run, 1, models.PhaseRunning)[0]
			return func(ctx context.Context, st workload.Store, i int) error {
				_, err := st.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: id, FeatureRunID: run, Phase: "plan"})
				return err
			}
		},
	},
	{
		name: "PassPhaseResult",
		happy: func(s seeder, n int) call {
			ids := s.phases(s.run(), n, models.PhaseRunning)
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.PassPhaseResult(ctx, ids[i], phaseOutput)
			}
		},
		replay: func(s seeder, n int) call {
			id := s.phases(s.run(), 1, models.PhasePassed)[0]
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.PassPhaseResult(ctx, id, phaseOutput)
			}
		},
	},
	{
		name: "FailPhaseResult",
		happy: func(s seeder, n int) call {
			ids := s.phases(s.run(), n, models.PhaseRunning)
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.FailPhaseResult(ctx, ids[i])
			}
		},
		replay: func(s seeder, n int) call {
			id := s.phases(s.run(), 1, models.PhaseFailed)[0]
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.FailPhaseResult(ctx, id)
			}
		},
	},
	{
		name: "CreateAgentInvocation",
		happy: func(s seeder, n int) call {
			run := s.run()
			phase := s.phases(run, 1, models.PhaseRunning)[0]
			ids := newUUIDs(n)
			return func(ctx context.Context, st workload.Store, i int) error {
				_, err := st.CreateAgentInvocation(ctx, repository.NewAgentInvocation{ID: ids[i], FeatureRunID: run, PhaseResultID: &phase, Agent: "coder", Model: "model-1", Input: invocationIn})
				return err
			}
		},
		replay: func(s seeder, n int) call {
			run := s.run()
			phase := s.phases(run, 1, models.PhaseRunning)[0]
			id := s.invocations(run, 1, models.InvocationRunning)[0]
			return func(ctx context.Context, st workload.Store, i int) error {
				_, err := st.CreateAgentInvocation(ctx, repository.NewAgentInvocation{ID: id, FeatureRunID: run, PhaseResultID: &phase, Agent: "coder", Model: "model-1", Input: invocationIn})
				return err
			}
		},
	},
	{
		name: "CompleteAgentInvocation",
		happy: func(s seeder, n int) call {
			ids := s.invocations(s.run(), n, models.InvocationRunning)
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.CompleteAgentInvocation(ctx, ids[i], invocationDone)
			}
		},
		replay: func(s seeder, n int) call {
			id := s.invocations(s.run(), 1, models.InvocationCompleted)[0]
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.CompleteAgentInvocation(ctx, id, invocationDone)
			}
		},
	},
	{
		name: "CreateCTAEvent",
		happy: func(s seeder, n int) call {
			run, ids := s.run(), newStrings("cta-", n)
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: ids[i], FeatureRunID: run, Kind: "approval", RequestData: ctaRequest})
			}
		},
		replay: func(s seeder, n int) call {
			run := s.run()
			id := s.ctaEvents(run, 1, models.CTAPending)[0]
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: id, FeatureRunID: run, Kind: "approval", RequestData: ctaRequest})
			}
		},
	},
	{
		name: "CompleteCTAEvent",
		happy: func(s seeder, n int) call {
			ids := s.ctaEvents(s.run(), n, models.CTAPending)
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.CompleteCTAEvent(ctx, ids[i], ctaResponse)
			}
		},
		replay: func(s seeder, n int) call {
			id := s.ctaEvents(s.run(), 1, models.CTACompleted)[0]
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.CompleteCTAEvent(ctx, id, ctaResponse)
			}
		},
	},
	{
		name: "TimeoutCTAEvent",
		happy: func(s seeder, n int) call {
			ids := s.ctaEvents(s.run(), n, models.CTAPending)
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.TimeoutCTAEvent(ctx, ids[i])
			}
		},
		replay: func(s seeder, n int) call {
			id := s.ctaEvents(s.run(), 1, models.CTATimedOut)[0]
			return func(ctx context.Context, st workload.Store, i int) error {
				return st.TimeoutCTAEvent(ctx, id)
			}
		},
	},
}

// BenchmarkWrite measures the happy path of each contract write: every call
// inserts a row or moves one to a new state, in one statement.
func BenchmarkWrite(b *testing.B) {
	benchWrites(b, false)
}

// BenchmarkReplay measures the replay path of each contract write: a create
// with an existing ID (one INSERT that conflicts), a transition to the state
// the row is in and an append of values already present (the guarded
// statement that changes no row and returns the row's state).
func BenchmarkReplay(b *testing.B) {
	benchWrites(b, true)
}

// benchWrites runs the happy path, or the replay path, of each write on
// each database, every side of it in turn, so that the sides of one write
// run close together in time.
func benchWrites(b *testing.B, replay bool) {
	for _, w := range writeCases {
		for _, db := range databases {
			for _, impl := range w.sides(db) {
				b.Run(w.name+db.key+"/impl="+impl, func(b *testing.B) {
					e := db.setup(b)
					ctx := b.Context()
					st, io, c := prepare(seeder{b: b, ctx: ctx, db: e}, w, replay, impl, b.N)
					measure(b, io, func(i int) error { return c(ctx, st, i) })
				})
			}
		}
	}
}

// prepare returns side impl of s's database, and the counter of its
// connections' bytes, with n calls of the happy or replay path of w
// seeded. On the fenced side the replay path makes its first call, which
// records the step in the row found as asked, outside the timed region:
// the calls after it find the row as asked at their own step, as a
// replayed workflow step does, and change nothing.
func prepare(s seeder, w writeCase, replay bool, impl string, n int) (workload.Store, *ioCounter, call) {
	s.b.Helper()
	st, io := s.db.store(impl)
	path := w.happy
	if replay {
		path = w.replay
	}
	c := path(s, n)
	if replay && impl == implFenced {
		if err := c(s.ctx, st, 0); err != nil {
			s.b.Fatalf("first fenced replay: %v", err)
		}
	}
	return st, io, c
}

// measure times b.N calls of op, failing b at the first error, and reports
// per call the allocations, the client's CPU time and the bytes the store's
// connections sent and received.
func measure(b *testing.B, io *ioCounter, op func(i int) error) {
	b.Helper()
	b.ReportAllocs()
	// Seeding left garbage behind; collecting it now keeps its cost out of
	// the measured calls.
	runtime.GC()
	start := startClient(io)
	b.ResetTimer()
	for i := range b.N {
		if err := op(i); err != nil {
			b.Fatalf("call %d: %v", i, err)
		}
	}
	b.StopTimer()
	start.report(b, b.N)
}

// clientUsage is what the client side has used so far: the process's CPU
// time and the bytes one store's connections carried.
type clientUsage struct {
	io             *ioCounter
	cpu            time.Duration
	sent, received int64
}

func startClient(io *ioCounter) clientUsage {
	u := clientUsage{io: io, cpu: processCPU()}
	u.sent, u.received = io.snapshot()
	return u
}

// report reports, per op, the client's CPU time and the bytes sent and
// received since u. The CPU time is the whole process's: the benchmark
// goroutine, the driver, the garbage collector, but not the server, which
// makes it the part of the cost the store's code decides, and steadier than
// the wall time on a shared machine.
func (u clientUsage) report(b *testing.B, ops int) {
	if cpu := processCPU(); cpu > 0 {
		b.ReportMetric((cpu-u.cpu).Seconds()/float64(ops), "cpu-sec/op")
	}
	sent, received := u.io.snapshot()
	b.ReportMetric(float64(sent-u.sent)/float64(ops), "sent-B/op")
	b.ReportMetric(float64(received-u.received)/float64(ops), "recv-B/op")
}
