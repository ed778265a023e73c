package bench

import (
	"strconv"
	"testing"
)

// TestFencedSideFences checks, on each database, that the side
// impl=fenced measures the fenced forms of the moves: each call of its
// happy path records its step in the row it moves, and of its replay path
// only the first, untimed call does, after which the row is as asked at
// that step; the repository's unfenced side records none.
func TestFencedSideFences(t *testing.T) {
	if testing.Short() {
		t.Skip("creates a database of its own")
	}
	const calls = 3
	for _, db := range databases {
		t.Run(db.name, func(t *testing.T) {
			e := db.setup(t)
			ctx := t.Context()
			// The rows, of either table a fenced write moves, that
			// record the step of the fenced side.
			stepped := func() int {
				t.Helper()
				var n int
				step := strconv.Itoa(fenceStep)
				err := e.reader().QueryRowContext(ctx, "SELECT (SELECT COUNT(*) FROM feature_runs WHERE step = "+step+
					") + (SELECT COUNT(*) FROM sandboxes WHERE step = "+step+")").Scan(&n)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			fenced := 0
			for _, w := range writeCases {
				if !w.fenced {
					continue
				}
				fenced++
				for _, replay := range []bool{false, true} {
					for _, impl := range []string{implRepository, implFenced} {
						before := stepped()
						st, _, c := prepare(seeder{b: t, ctx: ctx, db: e}, w, replay, impl, calls)
						for i := range calls {
							if err := c(ctx, st, i); err != nil {
								t.Fatalf("%s, replay %t, %s: call %d: %v", w.name, replay, impl, i, err)
							}
						}
						want := 0
						switch {
						case impl == implFenced && replay:
							want = 1
						case impl == implFenced:
							want = calls
						}
						if got := stepped() - before; got != want {
							t.Errorf("%s, replay %t, %s: %d rows record step %d, want %d", w.name, replay, impl, got, fenceStep, want)
						}
					}
				}
			}
			if fenced != 2 {
				t.Errorf("%d writes have a fenced form, want UpdateFeatureRunPhase and UpdateSandboxStatus", fenced)
			}
		})
	}
}
