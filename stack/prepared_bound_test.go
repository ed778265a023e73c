package stack_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/repository"
)

// The writes of TestPreparedStatementsBounded on each database, the first
// preparedWarmUp of them before its first measure, and the bound of the
// statements prepared: the distinct statements the package sends, which
// the test measures (see its log), with room to spare.
const (
	preparedWrites = 5000
	preparedWarmUp = 1000
	preparedBound  = 64
)

// TestPreparedStatementsBounded makes thousands of writes of every kind,
// each under a deadline of its own or none, on a GORM that prepares its
// statements (PrepareStmt), and checks that the statements prepared stay
// few: GORM keeps one prepared statement per statement text, for as long
// as the process runs, and MariaDB refuses to prepare more than
// max_prepared_stmt_count (16382) at once across all its connections, so a
// statement whose text varied with its arguments or its deadline would
// fill both. It counts GORM's cache on every database and, on MariaDB, the
// server's Prepared_stmt_count too, on a server of the test's own, as that
// count is the whole server's.
func TestPreparedStatementsBounded(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.All() {
		t.Run(kind.Name, func(t *testing.T) {
			t.Parallel()
			var server *dbtest.PrivateServer
			if kind.Name == "mariadb" {
				server = dbtest.PrivateMariaDB(t)
				kind = server.Database()
			}
			d := openDatabase(t, kind)
			db := d.open(&gorm.Config{PrepareStmt: true})
			cache, ok := db.ConnPool.(*gorm.PreparedStmtDB)
			require.True(t, ok, "PrepareStmt makes the pool a *gorm.PreparedStmtDB, not %T", db.ConnPool)
			repo := repository.New(db)
			serverCount := func() int64 {
				if server == nil {
					return 0
				}
				return server.GlobalStatus(t, "Prepared_stmt_count")
			}

			// measure is the size of GORM's cache and the server's count.
			type measure struct {
				cached int
				server int64
			}
			var warm measure
			deadlines := preparedDeadlines()
			start := time.Now()
			n := 0
		writes:
			for key := 0; ; key++ {
				for _, w := range preparedCalls(fmt.Sprintf("prepared/%d", key)) {
					// Each write twice, the second time as a replay,
					// which takes the write's other statements.
					for call := range 2 {
						ctx, cancel, timeout := deadlines(t.Context())
						err := w.call(ctx, repo)
						cancel()
						require.NoError(t, err, "write %d, %s (call %d of 2) with timeout %v", n+1, w.name, call+1, timeout)
						if n++; n == preparedWarmUp {
							warm = measure{len(cache.Stmts.Keys()), serverCount()}
						}
						if n == preparedWrites {
							break writes
						}
					}
				}
			}
			elapsed := time.Since(start)
			end := measure{len(cache.Stmts.Keys()), serverCount()}

			t.Logf("%d writes in %v; GORM's cache held %d statements after %d writes, %d after all",
				n, elapsed.Round(time.Millisecond), warm.cached, preparedWarmUp, end.cached)
			assert.LessOrEqual(t, end.cached, preparedBound, "GORM's cache is bounded")
			assert.LessOrEqual(t, end.cached, warm.cached, "GORM's cache grew over the last %d writes", preparedWrites-preparedWarmUp)
			if server != nil {
				t.Logf("the server's Prepared_stmt_count: %d after %d writes, %d after all, through %d connections",
					warm.server, preparedWarmUp, end.server, d.sqlDB.Stats().OpenConnections)
				assert.LessOrEqual(t, end.server, int64(preparedBound), "the server's prepared statements are bounded")
				assert.LessOrEqual(t, end.server, warm.server, "the server's prepared statements grew over the last %d writes", preparedWrites-preparedWarmUp)
			}
			if t.Failed() {
				keys := cache.Stmts.Keys()
				for _, k := range keys[max(0, len(keys)-3):] {
					t.Logf("one of the statements cached:\n%.300s", k)
				}
			}
		})
	}
}

// preparedDeadlines returns a function that gives each write its context:
// one in ten without a deadline, the others with a timeout spread evenly
// on a logarithmic scale from a second to a year, as a workflow's steps
// have, from a short call to a wait for a person. The sequence is the
// same on every run.
func preparedDeadlines() func(parent context.Context) (context.Context, context.CancelFunc, time.Duration) {
	rng := rand.New(rand.NewPCG(1, 2))
	const year = 365 * 24 * time.Hour
	lo, hi := math.Log(float64(time.Second)), math.Log(float64(year))
	i := 0
	return func(parent context.Context) (context.Context, context.CancelFunc, time.Duration) {
		i++
		if i%10 == 0 {
			ctx, cancel := context.WithCancel(parent)
			return ctx, cancel, 0
		}
		timeout := time.Duration(math.Exp(lo + rng.Float64()*(hi-lo)))
		ctx, cancel := context.WithTimeout(parent, timeout)
		return ctx, cancel, timeout
	}
}

// preparedCalls returns the writes of the contract on rows named after
// key, as contractWrites does, and after them those it lacks: a failed
// invocation with a parent, and a CTA event that is due, timed out by the
// sweeper.
func preparedCalls(key string) []keyedWrite {
	id := func(parts ...string) uuid.UUID {
		return repository.StableID(append([]string{key, "prepared"}, parts...)...)
	}
	run, parent, child := id("run"), id("invocation", "parent"), id("invocation", "child")
	due := key + "/prepared/cta/due"
	// Due an hour before the test: the sweeper finds it at once.
	expires := preparedStart.Add(-time.Hour)
	return append(contractWrites(key),
		keyedWrite{"CreateFeatureRun", func(ctx context.Context, r *repository.Repository) error {
			_, err := r.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: run, Phase: "plan"})
			return err
		}},
		keyedWrite{"CreateAgentInvocation", func(ctx context.Context, r *repository.Repository) error {
			_, err := r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{ID: parent, FeatureRunID: run, Agent: "planner"})
			return err
		}},
		keyedWrite{"CreateAgentInvocation", func(ctx context.Context, r *repository.Repository) error {
			_, err := r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{ID: child, FeatureRunID: run, ParentInvocationID: &parent, Agent: "coder"})
			return err
		}},
		keyedWrite{"FailAgentInvocation", func(ctx context.Context, r *repository.Repository) error {
			return r.FailAgentInvocation(ctx, child, repository.InvocationResult{InputTokens: 1}, "boom")
		}},
		keyedWrite{"CreateCTAEvent", func(ctx context.Context, r *repository.Repository) error {
			return r.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: due, FeatureRunID: run, Kind: "approval", ExpiresAt: expires})
		}},
		// One due event at a time, the one just made: on MariaDB the
		// sweeper's UPDATE lists the IDs it claimed, so its text has one
		// form per number of them.
		keyedWrite{"ExpireCTAEvents", func(ctx context.Context, r *repository.Repository) error {
			_, err := r.ExpireCTAEvents(ctx, time.Now(), 1)
			return err
		}},
		keyedWrite{"FailFeatureRunWithError", func(ctx context.Context, r *repository.Repository) error {
			return r.FailFeatureRunWithError(ctx, run, "boom")
		}},
	)
}

// preparedStart is when the test binary started.
var preparedStart = time.Now()
