package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	mathrand "math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/persistencetest"
)

const (
	// kills is how many times the test kills the program, each time in
	// another step.
	kills = 20
	// work is the longest a step works before its write and after it: the
	// window in which a kill leaves a write that DBOS has not recorded. A
	// kill comes up to one and a half times as long after a step began,
	// which lands about a third of kills in that window.
	work = 20 * time.Millisecond
)

// TestKilledWorkflowEndsAsACleanRun runs the program to the end on fresh
// databases, then again on other fresh databases, killing it with SIGKILL
// in 20 different steps, at a random moment of each, and restarting it
// after each kill, until it ends. DBOS recovers the workflow at each
// restart and runs the interrupted step again. The pipeline's tables must
// then be those of the clean run, as persistencetest compares them.
func TestKilledWorkflowEndsAsACleanRun(t *testing.T) {
	began := time.Now()
	admin := server(t)
	bin := filepath.Join(t.TempDir(), "pipeline")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	clean, killed := newDatabases(t, admin, "clean"), newDatabases(t, admin, "killed")

	steps := 0
	cleanRun := start(t, bin, clean, 0)
	for _, line := range cleanRun.wait() {
		if m := traceLine.FindStringSubmatch(line); m != nil && m[3] == "checkpointed" {
			steps++
		}
	}
	if !cleanRun.has("workflow feature-request/1 done: feature run 5ad6b2ae-8b6d-52ae-b101-b333ed970f2e") {
		t.Fatalf("the clean run did not finish:\n%s\n%s", strings.Join(cleanRun.lines, "\n"), cleanRun.stderr.String())
	}
	if steps < kills+kills/2 {
		t.Fatalf("the clean run has %d steps: too few to kill the program in %d of them", steps, kills)
	}

	// Each process but the last is killed; the next one's trace says what
	// DBOS made of the step it was killed in.
	var procs []*process
	last := 0 // the step of the last kill
	for len(procs) < kills {
		p := start(t, bin, killed, work)
		procs = append(procs, p)
		remaining := kills - len(procs) + 1
		target := last + 1 + mathrand.IntN(max(1, (steps-last)/remaining))
		if !p.waitForStep(target) {
			t.Fatalf("the workflow ended before kill %d, at step %d of %d", len(procs), target, steps)
		}
		time.Sleep(mathrand.N(work * 3 / 2))
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatalf("kill %d: %v (the workflow ended before it)", len(procs), err)
		}
		p.wait()
		k, ok := p.lastStep()
		if !ok || k.step <= last {
			t.Fatalf("kill %d: the trace ends at %+v, not in a step after the last kill's, %d", len(procs), k, last)
		}
		last = k.step
	}
	final := start(t, bin, killed, work)
	final.wait()
	if out := strings.Join(final.lines, "\n"); !strings.Contains(out, "workflow feature-request/1 done") {
		t.Fatalf("the last restart did not finish the workflow:\n%s\n%s", out, final.stderr.String())
	}
	procs = append(procs, final)

	// A kill after a write and before DBOS recorded the step makes DBOS run
	// the step again: its write runs twice.
	counts := map[string]int{}
	for i, p := range procs[:kills] {
		k, _ := p.lastStep()
		rerun := procs[i+1].has(fmt.Sprintf("step %d %s begin", k.step, k.name))
		var where string
		switch {
		case k.event == "begin" && rerun:
			where = "in a step, before its write"
		case k.event == "wrote" && rerun:
			where = "in a step, between its write and its checkpoint"
		case k.event == "wrote":
			where = "in a step, after DBOS recorded it and before the program said so"
		case k.event == "checkpointed" && !rerun:
			where = "between steps"
		default:
			t.Errorf("kill %d after %q: the next process ran the step again: %v, which DBOS should not do", i+1, k.line, rerun)
			continue
		}
		counts[where]++
		t.Logf("kill %2d: step %2d %-28s %s", i+1, k.step, k.name, where)
	}
	window := counts["in a step, between its write and its checkpoint"]
	t.Logf("%d kills in %d steps of %d: %d in a step between its write and its checkpoint, %d in a step before its write, %d in a step after its checkpoint, %d between steps; %v in all",
		kills, kills, steps, window, counts["in a step, before its write"],
		counts["in a step, after DBOS recorded it and before the program said so"], counts["between steps"], time.Since(began).Round(time.Millisecond))
	if window == 0 {
		t.Error("no kill landed between a step's write and its checkpoint: no write ran twice")
	}

	cleanApp := openApp(t, clean)
	want := persistencetest.TakeSnapshot(t, cleanApp)
	got := persistencetest.TakeSnapshot(t, openApp(t, killed))
	if d := persistencetest.Diff(want, got); len(d) > 0 {
		t.Fatalf("after %d kills, %d rows differ from the clean run's:\n%s", kills, len(d), d.Describe("clean run", "killed run", 5))
	}
	if want.Rows() != 14 {
		t.Errorf("the clean run left %d rows, want the feature run's 14", want.Rows())
	}

	// The last moves of the run and the sandbox were made at their steps'
	// DBOS IDs plus one. The trace numbers the steps that write from 1,
	// after the clock, DBOS's step 0: as DBOS does.
	for _, c := range []struct{ table, step string }{{"feature_runs", "review/enter"}, {"sandboxes", "sandbox/stop"}} {
		var step int64
		if err := cleanApp.Raw("SELECT step FROM " + c.table).Scan(&step).Error; err != nil {
			t.Fatal(err)
		}
		if n := cleanRun.stepNumber(c.step); step != int64(n)+1 {
			t.Errorf("%s: step %d, want that of %s, DBOS's step %d, plus one", c.table, step, c.step, n)
		}
	}
}

// server connects to the PostgreSQL server at TEST_POSTGRES_DSN, or the
// default one. Without one the test is skipped, or fails under CI.
func server(t *testing.T) *sql.DB {
	dsn := os.Getenv("TEST_POSTGRES_DSN")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	db, err := sql.Open("pgx", dsn)
	if err == nil {
		t.Cleanup(func() { db.Close() })
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
	return db
}

// databases are the two databases of a run of the program.
type databases struct {
	app, system string // DSNs
}

// newDatabases creates an application database and a DBOS system database
// on admin's server, with random names, and drops them when the test ends,
// however the program left them.
func newDatabases(t *testing.T, admin *sql.DB, role string) databases {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "dbos_example_" + hex.EncodeToString(b) + "_" + role
	var dbs databases
	for _, x := range []struct {
		name string
		dsn  *string
	}{{prefix + "_app", &dbs.app}, {prefix + "_system", &dbs.system}} {
		if _, err := admin.ExecContext(t.Context(), "CREATE DATABASE "+x.name); err != nil {
			t.Fatalf("create database: %v", err)
		}
		t.Cleanup(func() {
			if _, err := admin.ExecContext(context.Background(), "DROP DATABASE "+x.name+" WITH (FORCE)"); err != nil {
				t.Errorf("drop database %s: %v", x.name, err)
			}
		})
		*x.dsn = dsnOf(t, x.name)
	}
	return dbs
}

// dsnOf returns the DSN of database name on the test server.
func dsnOf(t *testing.T, name string) string {
	dsn := os.Getenv("TEST_POSTGRES_DSN")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("TEST_POSTGRES_DSN must be a postgres:// URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// openApp opens the pipeline's database of dbs.
func openApp(t *testing.T, dbs databases) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(postgres.Open(dbs.app), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqlDB.Close() })
	return db
}

// process is a run of the program, and the trace it printed.
type process struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	// lines is what it printed, complete once wait returned.
	lines []string
	// fresh gets each line as it is printed, and is closed at the end.
	fresh chan string
	done  chan struct{}
}

// traceLine is a line of the program's trace: "step 7 plan/ask wrote".
var traceLine = regexp.MustCompile(`^step (\d+) (\S+) (begin|wrote|checkpointed|recorded)$`)

// start starts the program on dbs.
func start(t *testing.T, bin string, dbs databases, work time.Duration) *process {
	t.Helper()
	p := &process{fresh: make(chan string, 1024), done: make(chan struct{})}
	p.cmd = exec.Command(bin, "-db", dbs.app, "-system-db", dbs.system, "-work", work.String())
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	go func() {
		defer close(p.done)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			p.lines = append(p.lines, s.Text())
			p.fresh <- s.Text()
		}
		close(p.fresh)
		_ = p.cmd.Wait()
	}()
	return p
}

// waitForStep waits until the program begins running step n or a later
// one, and reports whether it did before it ended.
func (p *process) waitForStep(n int) bool {
	timeout := time.After(time.Minute)
	for {
		select {
		case line, ok := <-p.fresh:
			if !ok {
				return false
			}
			if m := traceLine.FindStringSubmatch(line); m != nil && m[3] == "begin" {
				if k, _ := strconv.Atoi(m[1]); k >= n {
					return true
				}
			}
		case <-timeout:
			return false
		}
	}
}

// wait waits for the program to exit and returns what it printed.
func (p *process) wait() []string {
	for range p.fresh {
	}
	<-p.done
	return p.lines
}

// point is a line of the trace.
type point struct {
	step        int
	name, event string
	line        string
}

// lastStep returns the last line of the trace.
func (p *process) lastStep() (point, bool) {
	for i := len(p.lines) - 1; i >= 0; i-- {
		if m := traceLine.FindStringSubmatch(p.lines[i]); m != nil {
			n, _ := strconv.Atoi(m[1])
			return point{step: n, name: m[2], event: m[3], line: p.lines[i]}, true
		}
	}
	return point{}, false
}

// stepNumber returns the number the trace gives the step name, or -1.
func (p *process) stepNumber(name string) int {
	for _, l := range p.lines {
		if m := traceLine.FindStringSubmatch(l); m != nil && m[2] == name {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	return -1
}

// has reports whether the program printed line.
func (p *process) has(line string) bool {
	for _, l := range p.lines {
		if l == line {
			return true
		}
	}
	return false
}
