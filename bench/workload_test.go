package bench

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/agentpipeline/persistence/internal/workload"
)

// BenchmarkWorkload measures whole simulated feature runs (workload.Generate:
// 1 run, 5 phases, 20 invocations, 2 sandboxes, 3 CTA events, 50 memories,
// 80 steps), each step executed in order and checked with workload.Exec.
// One op is one feature run. With workers=1 the runs go one after another;
// with workers=8 eight goroutines share them, each run still sequential
// within itself, as eight concurrent workflows would be. runs/s is the
// throughput.
func BenchmarkWorkload(b *testing.B) {
	for _, workers := range []int{1, 8} {
		for _, db := range databases {
			for _, impl := range order(db.impls) {
				b.Run("workers="+strconv.Itoa(workers)+db.key+"/impl="+impl, func(b *testing.B) {
					benchWorkload(b, db.setup(b), impl, workers)
				})
			}
		}
	}
}

// benchWorkload runs b.N feature runs on the side impl of e, on workers
// goroutines.
func benchWorkload(b *testing.B, e backend, impl string, workers int) {
	st, io := e.store(impl)
	// Same seeds for every side, so all write the same data;
	// a fresh key per run, so no run replays an earlier one.
	prefix := randomHex(8) + "/"
	runs := make([][]workload.Step, b.N)
	for i := range runs {
		runs[i] = workload.Generate(int64(i), prefix+strconv.Itoa(i))
	}
	ctx := b.Context()
	// A run per worker first, untimed, so that every connection
	// the runs will use is open and has prepared its statements.
	warmUp := make([][]workload.Step, workers)
	for i := range warmUp {
		warmUp[i] = workload.Generate(int64(i), prefix+"warm-up/"+strconv.Itoa(i))
	}
	if err := runConcurrently(ctx, st, warmUp, workers); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	b.ReportAllocs()
	runtime.GC()
	start := startClient(io)
	b.ResetTimer()
	err := runConcurrently(ctx, st, runs, workers)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	start.report(b, b.N)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "runs/s")
}

// runConcurrently executes runs on workers goroutines, the steps of each run
// in order, and returns the first error a step's policy refused.
func runConcurrently(ctx context.Context, st workload.Store, runs [][]workload.Step, workers int) error {
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range workers {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(runs)); i = next.Add(1) - 1 {
				for _, step := range runs[i] {
					if err := workload.Exec(ctx, st, step, workload.InOrder); err != nil {
						errOnce.Do(func() { first = err; cancel() })
						return
					}
				}
			}
		})
	}
	wg.Wait()
	return first
}
