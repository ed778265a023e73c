package bench

import (
	"testing"
	"time"

	"github.com/agentpipeline/persistence/internal/workload"
)

// BenchmarkInterleaved measures each write's call by the repository and
// by the database's baseline in one loop, alternating, so that both meet
// the same load and the same state of the machine: a burst of load, or
// CPUs that have slowed down or gone idle, reach both sides at once. Each
// side goes first in every other pair. An op is one call of each side;
// repository-ns/op and pgx-ns/op (mysql-ns/op on MariaDB) are each side's
// call, and ratio is their quotient, repository / baseline, over the
// sample.
//
// The sides of BenchmarkWrite and BenchmarkReplay run one after another,
// which on a small virtual machine lets a side's time depend on what ran
// before it (see docs/performance.md); this benchmark is the check on
// them.
func BenchmarkInterleaved(b *testing.B) {
	benchInterleavedWrites(b, func(w writeCase, db database) (string, string, bool) {
		return implRepository, db.baseline, true
	})
}

// BenchmarkInterleavedFenced is BenchmarkInterleaved for the moves that
// Repository.AtStep fences, made through it, against the same moves
// unfenced: ratio is fenced / unfenced.
func BenchmarkInterleavedFenced(b *testing.B) {
	benchInterleavedWrites(b, func(w writeCase, db database) (string, string, bool) {
		return implFenced, implRepository, w.fenced
	})
}

// benchInterleavedWrites runs, for the happy and the replay path of each
// write on each database, the two sides that pair returns, if it returns
// ok, interleaved.
func benchInterleavedWrites(b *testing.B, pair func(writeCase, database) (side, base string, ok bool)) {
	for _, replay := range []bool{false, true} {
		path := "happy"
		if replay {
			path = "replay"
		}
		for _, w := range writeCases {
			for _, db := range databases {
				side, base, ok := pair(w, db)
				if !ok {
					continue
				}
				b.Run(path+"/"+w.name+"/db="+db.name, func(b *testing.B) {
					benchInterleaved(b, db, w, replay, [2]string{side, base})
				})
			}
		}
	}
}

// benchInterleaved runs b.N calls of w's happy or replay path on each of
// the two sides, alternating, and reports each side's time per call and
// the first side's time over the second's.
func benchInterleaved(b *testing.B, db database, w writeCase, replay bool, sides [2]string) {
	s := seeder{b: b, ctx: b.Context(), db: db.setup(b)}
	var (
		stores [2]workload.Store
		calls  [2]call
		spent  [2]time.Duration
	)
	for i, impl := range sides {
		stores[i], _, calls[i] = prepare(s, w, replay, impl, b.N)
	}
	b.ResetTimer()
	for i := range b.N {
		for k := range 2 {
			side := (i + k) % 2
			start := time.Now()
			if err := calls[side](s.ctx, stores[side], i); err != nil {
				b.Fatalf("call %d of %s: %v", i, sides[side], err)
			}
			spent[side] += time.Since(start)
		}
	}
	b.StopTimer()
	for i, impl := range sides {
		b.ReportMetric(float64(spent[i].Nanoseconds())/float64(b.N), impl+"-ns/op")
	}
	b.ReportMetric(float64(spent[0])/float64(spent[1]), "ratio")
}
