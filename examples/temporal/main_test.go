package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/persistencetest"
)

// event is the event every test's feature run is for.
const event = "feature-request/1"

// rowsOfARun is how many rows a feature run leaves: the run, its sandbox,
// 4 phase results, 6 agent invocations and 2 CTA events.
const rowsOfARun = 14

func TestMain(m *testing.M) {
	code := m.Run()
	dev.stop()
	os.Exit(code)
}

// devServer is the Temporal dev server the tests share: started by the
// first test that needs it, stopped when the tests end.
type devServer struct {
	once    sync.Once
	cli     string // the CLI's path
	address string
	err     error
	cmd     *exec.Cmd
	done    chan struct{}
	dir     string
	log     syncBuffer
}

var dev devServer

// temporalServer returns the address of the Temporal dev server and the
// path of the CLI that runs it, starting it if it is not running: the CLI
// is built by scripts/temporal-cli.sh when missing. The test is skipped
// under -short, or when the server cannot be started, unless CI is set.
func temporalServer(t *testing.T) (address, cli string) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: needs a Temporal dev server, which -short leaves out")
	}
	dev.once.Do(dev.start)
	if dev.err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("a Temporal dev server is required when CI is set: %v", dev.err)
		}
		t.Skipf("skipping: no Temporal dev server: %v", dev.err)
	}
	return dev.address, dev.cli
}

func (s *devServer) start() {
	out, err := exec.Command("scripts/temporal-cli.sh").Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = fmt.Errorf("%w: %s", err, exit.Stderr)
		}
		s.err = fmt.Errorf("scripts/temporal-cli.sh: %w", err)
		return
	}
	s.cli = strings.TrimSpace(string(out))
	s.dir, err = os.MkdirTemp("", "temporal-dev-")
	if err != nil {
		s.err = err
		return
	}
	port := freePort()
	s.address = fmt.Sprintf("127.0.0.1:%d", port)
	// Its HTTP API and metrics take random free ports; --headless leaves
	// the web UI out.
	s.cmd = exec.Command(s.cli, "server", "start-dev", "--headless",
		"--ip", "127.0.0.1", "--port", strconv.Itoa(port),
		"--db-filename", filepath.Join(s.dir, "temporal.db"), "--sqlite-pragma", "synchronous=OFF")
	s.cmd.Stdout, s.cmd.Stderr = &s.log, &s.log
	dieWithTests(s.cmd)
	if s.err = s.cmd.Start(); s.err != nil {
		return
	}
	s.done = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.done) }()

	// The server accepts connections in under a second; the default
	// namespace is ready a moment later.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.err = s.ready(ctx)
		cancel()
		if s.err == nil {
			return
		}
		select {
		case <-s.done:
			s.err = fmt.Errorf("the dev server exited: %w\n%s", s.err, s.log.String())
			return
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.err = fmt.Errorf("the dev server at %s is not ready after 30 s: %w\n%s", s.address, s.err, s.log.String())
			return
		}
	}
}

// ready reports whether the server answers, and knows the default
// namespace.
func (s *devServer) ready(ctx context.Context) error {
	c, err := client.DialContext(ctx, client.Options{HostPort: s.address, Logger: quietLogger(&bytes.Buffer{})})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
	return err
}

// stop stops the server, if it was started, and removes its database.
func (s *devServer) stop() {
	if s.done != nil {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// syncBuffer is a bytes.Buffer that a process may write while a test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freePort returns a TCP port free on 127.0.0.1 a moment ago.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// dial connects to the Temporal server at address, for the test.
func dial(t *testing.T, address string) client.Client {
	t.Helper()
	c, err := client.DialContext(t.Context(), client.Options{HostPort: address, Logger: quietLogger(t.Output())})
	if err != nil {
		t.Fatalf("connect to Temporal at %s: %v", address, err)
	}
	t.Cleanup(c.Close)
	return c
}

// uniqueID returns an ID no other test's workflow has: workflow IDs and
// task queues are the server's, which the tests share.
func uniqueID(role string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return event + "/" + role + "/" + hex.EncodeToString(b)
}

// runWorkflow runs the feature run of event as workflow id on the Temporal
// server of c, with a worker of acts in this process, to its end, and
// returns its run's ID. The worker stops when the test ends.
func runWorkflow(t *testing.T, c client.Client, id string, acts *Activities, stepTimeout time.Duration) string {
	t.Helper()
	w := newWorker(c, id, acts)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	wr, err := c.ExecuteWorkflow(ctx, startOptions(id, id), workflowName, Input{EventID: event, StepTimeout: stepTimeout})
	if err != nil {
		t.Fatalf("start workflow %s: %v", id, err)
	}
	var runID string
	if err := wr.Get(ctx, &runID); err != nil {
		t.Fatalf("workflow %s: %v", id, err)
	}
	return wr.GetRunID()
}

// postgresDSN returns the DSN of the PostgreSQL server at
// TEST_POSTGRES_DSN, or the default one. Without one the test is skipped,
// or fails under CI.
func postgresDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("TEST_POSTGRES_DSN")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	db, err := sql.Open("pgx", dsn)
	if err == nil {
		defer db.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		err = db.PingContext(ctx)
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL at TEST_POSTGRES_DSN (%s) is required when CI is set: %v", dsn, err)
		}
		t.Skipf("skipping: no PostgreSQL at TEST_POSTGRES_DSN (%s): %v", dsn, err)
	}
	return dsn
}

// openPostgres returns a fresh, migrated database on the PostgreSQL
// server, in a schema of its own that is dropped when the test ends.
func openPostgres(t *testing.T) *gorm.DB {
	t.Helper()
	return persistencetest.OpenPostgres(t, postgresDSN(t))
}

// dsnOf returns a DSN of db's schema for another process, whose
// connections the server shows as application.
func dsnOf(t *testing.T, db *gorm.DB, application string) string {
	t.Helper()
	var schema string
	if err := db.Raw("SELECT current_schema()").Scan(&schema).Error; err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(postgresDSN(t))
	if err != nil {
		t.Fatalf("TEST_POSTGRES_DSN must be a postgres:// URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("application_name", application)
	u.RawQuery = q.Encode()
	return u.String()
}

// trace is the trace of the activities of one workflow, each line with
// the time it was written or read.
type trace struct {
	mu    sync.Mutex
	part  []byte
	lines []entry
	// fresh gets each line as it comes, when not nil, unless its buffer
	// is full.
	fresh chan entry
}

type entry struct {
	at   time.Time
	line string
}

// Write adds the complete lines of p to the trace.
func (tr *trace) Write(p []byte) (int, error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.part = append(tr.part, p...)
	for {
		i := bytes.IndexByte(tr.part, '\n')
		if i < 0 {
			return len(p), nil
		}
		tr.add(string(tr.part[:i]))
		tr.part = tr.part[i+1:]
	}
}

func (tr *trace) add(line string) {
	e := entry{at: time.Now(), line: line}
	tr.lines = append(tr.lines, e)
	if tr.fresh != nil {
		select {
		case tr.fresh <- e:
		default: // nobody is waiting for lines: they are in tr.lines
		}
	}
}

// notef adds a line of the test's own.
func (tr *trace) notef(format string, args ...any) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.add(fmt.Sprintf(format, args...))
}

// entries returns the lines so far.
func (tr *trace) entries() []entry {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]entry(nil), tr.lines...)
}

// point is a line of the activities' trace: "step 7 sandbox/pause attempt
// 1 begin".
type point struct {
	step    int
	name    string
	attempt int
	event   string
	at      time.Time
	line    string
}

var traceLine = regexp.MustCompile(`^step (\d+) (\S+) attempt (\d+) (begin|wrote|timed out)$`)

func parse(e entry) (point, bool) {
	m := traceLine.FindStringSubmatch(e.line)
	if m == nil {
		return point{}, false
	}
	n, _ := strconv.Atoi(m[1])
	a, _ := strconv.Atoi(m[3])
	return point{step: n, name: m[2], attempt: a, event: m[4], at: e.at, line: e.line}, true
}

// points returns the trace lines of tr that are the activities'.
func points(es []entry) []point {
	var ps []point
	for _, e := range es {
		if p, ok := parse(e); ok {
			ps = append(ps, p)
		}
	}
	return ps
}

// find returns the first line of the step name's attempt with event.
func find(ps []point, name string, attempt int, event string) (point, bool) {
	for _, p := range ps {
		if p.name == name && p.attempt == attempt && p.event == event {
			return p, true
		}
	}
	return point{}, false
}

// snapshotAfterEachStep returns AfterWrite for a run that is never retried:
// it reads db after each step's write into snaps, by position, with
// snaps[0] read now.
func snapshotAfterEachStep(t *testing.T, db *gorm.DB) (after func(context.Context, Step, error), snaps func() []persistencetest.Snapshot) {
	t.Helper()
	var mu sync.Mutex
	got := []persistencetest.Snapshot{persistencetest.TakeSnapshot(t, db)}
	var failure error
	after = func(ctx context.Context, s Step, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil || failure != nil {
			failure = errors.Join(failure, err)
			return
		}
		if int(s.Position) != len(got) {
			failure = fmt.Errorf("step %d %s wrote after step %d", s.Position, s.Name, len(got)-1)
			return
		}
		snap, err := persistencetest.ReadSnapshot(context.WithoutCancel(ctx), db)
		if err != nil {
			failure = err
			return
		}
		got = append(got, snap)
	}
	snaps = func() []persistencetest.Snapshot {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if failure != nil {
			t.Fatalf("the clean run: %v", failure)
		}
		return got
	}
	return after, snaps
}

// countSteps returns how many steps the workflow has, from a trace of a
// run never retried.
func countSteps(t *testing.T, ps []point) int {
	t.Helper()
	n := 0
	for _, p := range ps {
		if p.event == "begin" {
			n++
			if p.step != n || p.attempt != 1 {
				t.Fatalf("a clean run's trace has %q as its begin #%d", p.line, n)
			}
		}
	}
	return n
}

// describeRow is a row of a snapshot diff, for a message: its table, key
// and the columns that differ.
func describeRow(d persistencetest.Difference) string {
	var cols []string
	for i, c := range d.Columns {
		if d.Want == nil || d.Got == nil || d.Want[i] != d.Got[i] {
			cols = append(cols, c)
		}
	}
	return fmt.Sprintf("%s %s (%s)", d.Table, d.Key, strings.Join(cols, ", "))
}
