package bench

import (
	"strconv"
	"testing"

	"github.com/agentpipeline/persistence/models"
)

// scalingSeedBudget bounds the memories seeded for one run of a scaling
// benchmark. Runs are reused round-robin once b.N runs would exceed it, so
// each append still finds about stored values: two more per append a run
// receives, under 1% of stored over 1,000 appends.
const scalingSeedBudget = 200_000

// BenchmarkAppendScaling measures a memory append of two new values to a
// run that already holds 10, 1,000, 10,000 or 20,000 memories, and, as
// stored=10000-replay, a replayed append of two values already among
// 10,000, which must find them without writing. The append runs on
// the server, so what the client sends (sent-B/op) must not grow with the
// stored array; the server's work does, as it compares each new value with
// every stored one and writes the whole array back.
//
// The naive side is left out: its append reads the whole array and writes
// it back from the client, so that what it sends grows with the array is
// known without measuring, and BENCHMARKS.md compares the scaling of the
// repository with pgx only.
func BenchmarkAppendScaling(b *testing.B) {
	e := setup(b)
	for _, stored := range []int{10, 1_000, 10_000, 20_000} {
		for _, impl := range []string{implRepository, implPGX} {
			b.Run("stored="+strconv.Itoa(stored)+"/impl="+impl, func(b *testing.B) {
				ctx := b.Context()
				st, io := e.store(impl)
				runs := seeder{b: b, ctx: ctx, db: e}.runs(min(b.N, max(1, scalingSeedBudget/stored)), models.RunRunning, stored)
				values := newMemories(b.N)
				measure(b, io, func(i int) error {
					return st.UpdateFeatureRunMemories(ctx, runs[i%len(runs)], values[i])
				})
			})
		}
	}
	for _, impl := range []string{implRepository, implPGX} {
		b.Run("stored=10000-replay/impl="+impl, func(b *testing.B) {
			ctx := b.Context()
			st, io := e.store(impl)
			run := seeder{b: b, ctx: ctx, db: e}.runs(1, models.RunRunning, 10_000)[0]
			present := []any{"stored 5000", "stored 10000"}
			measure(b, io, func(int) error {
				return st.UpdateFeatureRunMemories(ctx, run, present)
			})
		})
	}
}
