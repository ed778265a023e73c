package repository_test

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// chainID is the ID of the invocation at depth k (0 the top) of a chain
// of n: IDs fall as depth grows, so the timeline's order (created_at,
// then ID, every row created at the same time) lists the deepest first
// and a parent after its sub-agent.
func chainID(n, k int) uuid.UUID {
	return uuid.MustParse(fmt.Sprintf("00000000-0000-4000-8000-%012d", n-k))
}

// chainSQL inserts, in one statement, a chain of @n invocations of the
// run @run into agent_invocations, each the sub-agent of the one before,
// with the IDs of chainID; parents come first, for the databases that
// check a parent row by row.
var chainSQL = map[string]string{
	"sqlite": `WITH RECURSIVE chain(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM chain WHERE k + 1 < @n)
INSERT INTO agent_invocations (id, feature_run_id, parent_invocation_id, agent, model, status, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at)
SELECT printf('00000000-0000-4000-8000-%012d', @n - k), @run,
	CASE WHEN k = 0 THEN NULL ELSE printf('00000000-0000-4000-8000-%012d', @n - k + 1) END,
	'sub-agent', 'm', 'running', 0, 0, 0, @at, @at
FROM chain ORDER BY k`,
	"postgres": `INSERT INTO agent_invocations (id, feature_run_id, parent_invocation_id, agent, model, status, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at)
SELECT ('00000000-0000-4000-8000-' || lpad((@n - k)::text, 12, '0'))::uuid, @run,
	CASE WHEN k = 0 THEN NULL ELSE ('00000000-0000-4000-8000-' || lpad((@n - k + 1)::text, 12, '0'))::uuid END,
	'sub-agent', 'm', 'running', 0, 0, 0, @at, @at
FROM generate_series(0, @n - 1) AS k ORDER BY k`,
	"mariadb": `INSERT INTO agent_invocations (id, feature_run_id, parent_invocation_id, agent, model, status, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at)
SELECT CONCAT('00000000-0000-4000-8000-', LPAD(@n - seq, 12, '0')), @run,
	IF(seq = 0, NULL, CONCAT('00000000-0000-4000-8000-', LPAD(@n - seq + 1, 12, '0'))),
	'sub-agent', 'm', 'running', 0, 0, 0, @at, @at
FROM seq_0_to_%d ORDER BY seq`,
}

// stackLimit serialises the reads of TestRunTimelineAtAnyDepth's
// subtests, each under a stack limit of its own, which is the process's.
var stackLimit sync.Mutex

// readLimited reads the timeline of run with every goroutine's stack
// limited to limit bytes, and returns how long the read took.
func readLimited(ctx context.Context, repo *repository.Repository, run uuid.UUID, limit int) (*repository.Timeline, time.Duration, error) {
	stackLimit.Lock()
	defer stackLimit.Unlock()
	defer debug.SetMaxStack(debug.SetMaxStack(limit))
	start := time.Now()
	tl, err := repo.RunTimeline(ctx, run)
	return tl, time.Since(start), err
}

// shortDepth is the chain's depth under -short: deep enough that a
// recursive walk (1,376 bytes a level, 41 MB in all) still passes the 16
// MiB that the stack is limited to at least.
const shortDepth = 30_000

// stackPerLevel is the stack, in bytes per level of nesting, that
// TestRunTimelineAtAnyDepth lets a read use: far less than a recursive
// walk's frame (1,376 bytes when nest recursed), far more than a read
// needs at any depth when it does not recurse.
const stackPerLevel = 256

// TestRunTimelineAtAnyDepth reads the timeline of a run whose invocations
// form one chain of sub-agents, 300,000 deep on SQLite (the depth at which
// a recursive read took 512 MiB of stack) and 100,000 deep on PostgreSQL
// and MariaDB, shortDepth under -short, and checks the nesting down to the
// bottom. The goroutines' stacks are limited to stackPerLevel bytes per
// level meanwhile, so that a read whose stack grows with the depth
// crashes the process here, at a depth the test can afford, as a
// recursive nest did with "fatal error: stack overflow" at a million
// under Go's default limit of 1 GB. The limit, at least 16 MiB,
// holds for the tests running beside it too, whose goroutines need far
// less.
func TestRunTimelineAtAnyDepth(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		db    string
		depth int
	}{{"sqlite", 300_000}, {"postgres", 100_000}, {"mariadb", 100_000}} {
		d := database(t, c.db)
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			n := c.depth
			if testing.Short() {
				n = min(n, shortDepth)
			}
			db := d.Open(t)
			ctx := t.Context()
			require.NoError(t, migrate.Up(ctx, db))
			repo := repository.New(db)
			run, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan"})
			require.NoError(t, err)

			start := time.Now()
			q := chainSQL[d.Name]
			if d.Name == "mariadb" {
				q = fmt.Sprintf(q, n-1) // a sequence table names its bounds
			}
			at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
			res := db.WithContext(ctx).Exec(q, map[string]any{"n": n, "run": run, "at": at})
			require.NoError(t, res.Error)
			require.EqualValues(t, n, res.RowsAffected)
			inserted := time.Since(start)

			limit := max(n*stackPerLevel, 16<<20)
			tl, read, err := readLimited(ctx, repo, run, limit)
			require.NoError(t, err)

			require.Len(t, tl.Unphased, 1)
			node := &tl.Unphased[0]
			for k := range n {
				if node.ID != chainID(n, k) {
					t.Fatalf("depth %d: invocation %s, want %s", k, node.ID, chainID(n, k))
				}
				if k == n-1 {
					break
				}
				if len(node.SubInvocations) != 1 {
					t.Fatalf("depth %d: %d sub-invocations, want 1", k, len(node.SubInvocations))
				}
				node = &node.SubInvocations[0]
			}
			require.Empty(t, node.SubInvocations, "the bottom of the chain")
			require.Equal(t, chainID(n, n-2), *node.ParentInvocationID)
			t.Logf("%s: a chain of %d sub-agents inserted in %v, its timeline read in %v with stacks limited to %d MiB",
				d.Name, n, inserted.Round(time.Millisecond), read.Round(time.Millisecond), limit>>20)
		})
	}
}

// database returns the database of dbtest.All named name.
func database(t *testing.T, name string) dbtest.Database {
	for _, d := range dbtest.All() {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no database %q", name)
	return dbtest.Database{}
}
