package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/workload"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// oracleSeeds are the workloads the oracle replays; the crash at every step
// runs on the first.
var oracleSeeds = []int64{1, 2, 3}

// copies is how many goroutines execute each step at once.
const copies = 8

// databases are where the oracle runs. On PostgreSQL commits do not wait
// for the disk: the oracle crashes the workflow, never the server, and
// waiting for the WAL flush changes nothing it compares (what a commit
// makes visible, and when, is the same) while it makes the thousands of
// commits of the crash test about three times slower. MariaDB's setting
// for it, innodb_flush_log_at_trx_commit, is the server's, which tests
// leave alone.
var databases = []dbtest.Database{
	{Name: "sqlite", Open: dbtest.SQLite},
	{Name: "postgres", Open: func(t testing.TB) *gorm.DB {
		return dbtest.PostgresWithParams(t, map[string]string{"synchronous_commit": "off"})
	}},
	{Name: "mariadb", Open: dbtest.MariaDB},
}

// servers are the databases other than SQLite, which run as servers.
var servers = databases[1:]

// freshRepo opens a fresh, migrated database.
func freshRepo(t *testing.T, open dbtest.Opener) (context.Context, *gorm.DB, *repository.Repository) {
	t.Helper()
	db := open(t)
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	// Keep a connection per goroutine, as a service would, rather than
	// reconnecting for each burst of copies.
	sqlDB.SetMaxIdleConns(copies)
	ctx := t.Context()
	if err := migrate.Up(ctx, db); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return ctx, db, repository.New(db)
}

// cleanSnapshot runs steps once, in order, on a fresh database and returns
// what they leave: the oracle every other way of running them must match.
func cleanSnapshot(t *testing.T, open dbtest.Opener, steps []workload.Step) snapshot {
	t.Helper()
	ctx, db, repo := freshRepo(t, open)
	runSteps(t, ctx, repo, steps, workload.InOrder)
	return takeSnapshot(t, ctx, db, uuid.Nil)
}

// TestReplayOracle runs generated workloads once cleanly, then with every
// step executed twice, with every step executed by 8 goroutines at once,
// and crashed at every step and replayed from the start; each way must
// leave the database exactly as the clean run did.
func TestReplayOracle(t *testing.T) {
	for _, d := range databases {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			for _, seed := range oracleSeeds {
				steps := workload.Generate(seed, fmt.Sprintf("oracle-%d", seed))
				clean := cleanSnapshot(t, d.Open, steps)
				if n := clean.rows(); n != 1+workload.Sandboxes+workload.Phases+1+workload.Invocations+workload.CTAEvents {
					t.Fatalf("the clean run left %d rows", n)
				}

				t.Run(fmt.Sprintf("seed%d/EachStepTwice", seed), func(t *testing.T) {
					ctx, db, repo := freshRepo(t, d.Open)
					for _, s := range steps {
						for range 2 {
							if err := workload.Exec(ctx, repo, s, workload.InOrder); err != nil {
								t.Fatal(err)
							}
						}
					}
					requireSame(t, clean, takeSnapshot(t, ctx, db, uuid.Nil), "each step twice")
				})

				t.Run(fmt.Sprintf("seed%d/EachStepBy%dGoroutines", seed, copies), func(t *testing.T) {
					ctx, db, repo := freshRepo(t, d.Open)
					for _, s := range steps {
						errs := dbtest.Concurrently(copies, func(int) error {
							return workload.Exec(ctx, repo, s, workload.InOrder)
						})
						if err := errors.Join(errs...); err != nil {
							t.Fatal(err)
						}
					}
					requireSame(t, clean, takeSnapshot(t, ctx, db, uuid.Nil), "each step by 8 goroutines")
				})

				if seed != oracleSeeds[0] {
					continue
				}
				t.Run(fmt.Sprintf("seed%d/CrashAtEveryStep", seed), func(t *testing.T) {
					if testing.Short() && d.Name != "sqlite" {
						t.Skipf("skipping under -short: crashing at each of %d steps replays %d steps on %s", len(steps), len(steps)*(len(steps)+1)*3/2, d.Name)
					}
					ctx, db, repo := freshRepo(t, d.Open)
					for k := 0; k <= len(steps); k++ {
						emptyTables(t, ctx, db)
						runSteps(t, ctx, repo, steps[:k], workload.InOrder)
						// The replay re-executes the steps that ran before
						// the crash after later ones did, and the rest
						// for the first time.
						runSteps(t, ctx, repo, steps[:k], workload.Replay)
						runSteps(t, ctx, repo, steps[k:], workload.InOrder)
						requireSame(t, clean, takeSnapshot(t, ctx, db, uuid.Nil),
							fmt.Sprintf("crash before step %d (%s), replay from the start", k, stepName(steps, k)))
					}
					t.Logf("%d crash points replayed, %d step executions", len(steps)+1, len(steps)*(len(steps)+1)*3/2)
				})
			}
		})
	}
}

func stepName(steps []workload.Step, k int) string {
	if k == len(steps) {
		return "after the last"
	}
	return steps[k].Name
}

// TestCleanRunIsTheSameOnEveryDatabase compares the clean snapshots of
// PostgreSQL and MariaDB with SQLite's, so that the fault injection can
// take its oracle from SQLite.
func TestCleanRunIsTheSameOnEveryDatabase(t *testing.T) {
	t.Parallel()
	for _, seed := range oracleSeeds {
		steps := workload.Generate(seed, fmt.Sprintf("dialects-%d", seed))
		sqlite := cleanSnapshot(t, databases[0].Open, steps)
		for _, d := range servers {
			requireSame(t, sqlite, cleanSnapshot(t, d.Open, steps), fmt.Sprintf("seed %d on %s against SQLite", seed, d.Name))
		}
	}
}

// TestRacedCTA runs the answer and the timeout of the raced CTA event at
// once, 8 goroutines each, rather than in the order Generate picked. One
// side must win whole: its calls succeed, the other side's return
// ErrInvalidTransition, and the database ends as the clean run in which
// that side came first.
func TestRacedCTA(t *testing.T) {
	for _, d := range databases {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			steps := workload.Generate(4, "race")
			first := -1
			for i, s := range steps {
				if strings.HasSuffix(s.Name, "-race") {
					first = i
					break
				}
			}
			if first < 0 || !strings.HasSuffix(steps[first+1].Name, "-race") {
				t.Fatal("the workload has no pair of raced steps")
			}
			swapped := append([]workload.Step(nil), steps...)
			swapped[first], swapped[first+1] = swapped[first+1], swapped[first]
			cleanBy := map[string]snapshot{
				steps[first].Name:   cleanSnapshot(t, d.Open, steps),
				swapped[first].Name: cleanSnapshot(t, d.Open, swapped),
			}

			ctx, db, repo := freshRepo(t, d.Open)
			wins := map[string]int{}
			for round := range 10 {
				emptyTables(t, ctx, db)
				runSteps(t, ctx, repo, steps[:first], workload.InOrder)
				errs := dbtest.Concurrently(2*copies, func(i int) error {
					return steps[first+i%2].Run(ctx, repo)
				})
				winner := ""
				for i, err := range errs {
					s := steps[first+i%2]
					if err := workload.Check(s.Name, workload.InOrder, err); err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
					if err == nil {
						if winner != "" && winner != s.Name {
							t.Fatalf("round %d: both %s and %s succeeded", round, winner, s.Name)
						}
						winner = s.Name
					}
				}
				if winner == "" {
					t.Fatalf("round %d: neither side won: %v", round, errors.Join(errs...))
				}
				wins[winner]++
				runSteps(t, ctx, repo, steps[first+2:], workload.InOrder)
				requireSame(t, cleanBy[winner], takeSnapshot(t, ctx, db, uuid.Nil),
					fmt.Sprintf("round %d, won by %s", round, winner))
			}
			t.Logf("winners over 10 rounds: %v", wins)
		})
	}
}
