package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/dialect/mariadb"
	"github.com/agentpipeline/persistence/internal/dialect/mariadb/mariadbtest"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/persistencetest"
	"github.com/agentpipeline/persistence/repository"
)

func TestSimulate(t *testing.T) {
	for _, d := range dbtest.All() {
		t.Run(d.Name, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, simulate(t.Context(), d.Open(t), &out))
			got := out.String()
			for _, want := range []string{
				`!! crash after step "implement/remember" wrote to the database`,
				"  ↻ implement/remember",
				"replay check: the database is identical to before the crash (9 rows in 5 tables)",
				"  ✓ finish ",
				"planner       claude-opus-4    completed  2,340   0/0               0.067500000",
				"tester        claude-haiku-4   failed     2,900   0/0               0.003280000",
				// A sub-agent, under its caller, and cached tokens.
				"coder         claude-sonnet-4  completed  7,300   0/4,000           0.050100000",
				"└ researcher  claude-haiku-4   completed  1,750   1,200/0           0.001336000",
				"(confirmation): timed_out\n",
				"run: completed in phase review, 5 memories",
				"  provider  anthropic        7            27,370  4,200/4,000       0.266156000",
				"  total                      7            27,370  4,200/4,000       0.266156000",
			} {
				assert.Contains(t, got, want)
			}
			assert.Equal(t, 1, strings.Count(got, "↻"), "only the crashed step runs twice")
			assert.Regexp(t, `coder +claude-sonnet-4 +completed +7,300 .*\n +└ researcher `, got, "the sub-agent right under its caller")
		})
	}
}

// TestWorkflowIsReplaySafe runs the workflow's steps, one engine step
// each, under persistencetest's replay modes, on every database.
//
// Not under FenceSteps: each step fences its own writes, with repo.AtStep
// of the position the engine gives it, which is the position FenceSteps
// would give; with FenceSteps, a step that forgot to would pass.
//
// On SQLite, under ReplayFromStart too, although the workflow is for
// engines that memoise finished steps, as the example's does: fenced, a
// step replayed after later steps ran finds the rows they moved and
// changes nothing. Unfenced, "sandbox/ready" replayed after the sandbox
// stopped would ask to move it back to running, which the Repository
// refuses. On the servers, the mode would take a minute more.
func TestWorkflowIsReplaySafe(t *testing.T) {
	for _, d := range []struct {
		name string
		open func(testing.TB) *gorm.DB
	}{
		{"sqlite", persistencetest.Open},
		{"postgres", func(tb testing.TB) *gorm.DB {
			dbtest.PostgresServer(tb) // skips, or fails under CI, without a server
			return persistencetest.OpenPostgres(tb, dbtest.PostgresDSN())
		}},
		{"mariadb", func(tb testing.TB) *gorm.DB {
			dbtest.MariaDBServer(tb) // skips, or fails under CI, without a server
			return persistencetest.OpenMariaDB(tb, dbtest.MariaDBDSN())
		}},
	} {
		t.Run(d.name, func(t *testing.T) {
			if testing.Short() && d.name != "sqlite" {
				t.Skip("skipping under -short: every crash point opens a schema of its own")
			}
			// Every crash point and zombie opens a database of its own: run
			// the databases side by side.
			t.Parallel()
			steps := workflowSteps(t)
			if len(steps) != 28 {
				t.Fatalf("%d steps, want the workflow's 28", len(steps))
			}
			var opts []persistencetest.Option
			if d.name == "sqlite" {
				opts = append(opts, persistencetest.ReplayFromStart())
			}
			persistencetest.RequireReplaySafe(t, d.open, steps, opts...)
		})
	}
}

// TestWorkflowFencesItsZombies runs the workflow's steps in order, with a
// zombie of "implement/start" that writes after "review/start" ran and
// before "finish" completes the run. Each step writing at its position, the
// zombie's move to implement finds the run moved at a later step, and the
// run completes in review. persistencetest's zombie mode runs such a
// zombie too, in TestWorkflowIsReplaySafe; this test names the case.
func TestWorkflowFencesItsZombies(t *testing.T) {
	ctx := t.Context()
	steps := workflowSteps(t)
	zombie := slices.IndexFunc(steps, func(s persistencetest.Step) bool { return s.Name == "implement/start" })
	require.GreaterOrEqual(t, zombie, 0)
	repo := repository.New(persistencetest.Open(t))
	for _, s := range steps {
		require.NoError(t, s.Run(ctx, repo), s.Name)
		if s.Name == "review/start" {
			// The engine gave up on this attempt: nobody sees its error.
			_ = steps[zombie].Run(ctx, repo)
		}
	}
	run, err := repo.GetFeatureRun(ctx, repository.StableID(replayEvent, "run"))
	require.NoError(t, err)
	assert.Equal(t, "review", run.Phase, "the zombie of implement/start took the phase back")
	assert.Equal(t, models.RunCompleted, run.Status)
}

// replayEvent is the event that triggers the workflow of workflowSteps.
const replayEvent = "feature-request/replay-safe"

// workflowSteps returns the workflow's steps, each running the workflow
// with an engine whose journal holds every other step, so that only it
// executes, as an engine replaying the workflow would.
func workflowSteps(t *testing.T) []persistencetest.Step {
	// A run on a scratch database lists the steps, in order.
	wf := &workflow{repo: repository.New(persistencetest.Open(t)), eventID: replayEvent, start: time.Now().UTC()}
	wf.run = repository.StableID(wf.eventID, "run")
	learn := &engine{journal: map[string]bool{}, out: io.Discard}
	require.NoError(t, wf.execute(t.Context(), learn))
	steps := make([]persistencetest.Step, len(learn.order))
	for i, name := range learn.order {
		steps[i] = persistencetest.Step{Name: name, Run: func(ctx context.Context, repo *repository.Repository) error {
			e := &engine{journal: map[string]bool{}, out: io.Discard}
			for _, other := range learn.order {
				e.journal[other] = other != name
			}
			w := *wf
			w.repo = repo
			return w.execute(ctx, e)
		}}
	}
	return steps
}

func TestRunOnSQLiteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kept.db")
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), path, false, &out))
	assert.Contains(t, out.String(), "replay check")
	_, err := os.Stat(path)
	require.NoError(t, err, "a given SQLite file is the caller's to keep")
}

// TestRunOnMariaDBURL runs the example as the README shows, on a mysql://
// URL naming a fresh database.
func TestRunOnMariaDBURL(t *testing.T) {
	cfg, err := mariadb.Config(dbtest.MariaDBDSN())
	require.NoError(t, err)
	name := mariadbtest.Database(t, dbtest.MariaDBServer(t))
	url := "mysql://" + cfg.User + "@" + cfg.Addr + "/" + name
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), url, false, &out))
	assert.Contains(t, out.String(), "(database: mariadb)")
	assert.Contains(t, out.String(), "replay check: the database is identical to before the crash")
}

func TestOpenFailsFastWithOneLine(t *testing.T) {
	// A server that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := closed.Addr().String()
	closed.Close()

	old := connectTimeout
	connectTimeout = time.Second
	t.Cleanup(func() { connectTimeout = old })

	for name, dsn := range map[string]string{
		"silent server":      "postgres://postgres@" + ln.Addr().String() + "/postgres?sslmode=disable",
		"refused":            "postgres://postgres@" + closedAddr + "/postgres?sslmode=disable",
		"key=value":          "host=127.0.0.1 port=" + strings.Split(closedAddr, ":")[1] + " user=postgres",
		"bad URL":            "postgres://[::1",
		"silent MariaDB":     "mysql://root@" + ln.Addr().String() + "/test",
		"refused MariaDB":    "mysql://root@" + closedAddr + "/test",
		"missing sqlite dir": filepath.Join(t.TempDir(), "no", "such", "dir", "x.db"),
	} {
		start := time.Now()
		err := run(context.Background(), dsn, false, &bytes.Buffer{})
		require.Error(t, err, name)
		assert.Less(t, time.Since(start), 5*time.Second, "%s: bounded by the connect timeout", name)
		assert.NotContains(t, oneLine(err), "\n", name)
		assert.NotContains(t, oneLine(err), "\t", name)
	}
	assert.Equal(t, "a b c", oneLine(errors.New("a\n\tb  c")))
}

// TestServe runs the example with -serve, on SQLite, and reads the
// viewer's list and the run's page over HTTP before stopping it.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	urls := make(chan string, 1)
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runServe(ctx, filepath.Join(t.TempDir(), "served.db"), false, "127.0.0.1:0", &out, func(u string) { urls <- u })
	}()
	var base string
	select {
	case base = <-urls:
	case err := <-done:
		t.Fatal(err)
	}
	for _, path := range []string{"", "cta", "sandboxes/leaked"} {
		res, err := http.Get(base + path)
		require.NoError(t, err)
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, res.StatusCode, path)
		assert.Contains(t, string(body), "runview", path)
	}
	m := regexp.MustCompile(`this run: (\S+)\)`).FindStringSubmatch(out.String())
	require.NotNil(t, m, out.String())
	res, err := http.Get(m[1])
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Contains(t, string(body), "researcher", "the sub-agent is in the waterfall")
	cancel()
	require.NoError(t, <-done)
	assert.Contains(t, out.String(), "The run viewer is at "+base)
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMain runs more tests side by side than go test's default, as they
// mostly wait for the database servers; see dbtest.Parallel.
func TestMain(m *testing.M) { dbtest.Main(m) }
