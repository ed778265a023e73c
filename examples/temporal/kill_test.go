package main

import (
	"bufio"
	"crypto/rand"
	"fmt"
	mathrand "math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/persistencetest"
	"github.com/agentpipeline/persistence/repository"
)

const (
	// kills is how many times the test kills the worker, each time in
	// another step.
	kills = 20
	// work is the longest a step works before its write and after it: the
	// window in which a kill leaves a write that Temporal has not
	// recorded. A kill comes up to one and a half times as long after a
	// step began.
	work = 20 * time.Millisecond
	// killTimeout is the activities' StartToCloseTimeout in the kill
	// test: how long Temporal waits for the attempt of a killed worker
	// before it retries the activity.
	killTimeout = 2 * time.Second
)

// TestKilledWorkerEndsAsACleanRun runs the workflow to its end on a fresh
// database, with a worker in the test's process, then on another fresh
// database with the program, killing it with SIGKILL in 20 different
// steps, at a random moment of each, and starting it again after each
// kill, until the workflow ends. Each new worker replays the workflow,
// and Temporal retries the activity that was running when the worker died
// once its attempt timed out. The pipeline's tables must then be those of
// the clean run, as persistencetest compares them.
//
// After each kill the test reads the tables, once the killed worker's
// connections are gone, to tell a kill before a step's write from a kill
// after it: after the write returned, or after the database committed it
// and before the worker got the reply.
func TestKilledWorkerEndsAsACleanRun(t *testing.T) {
	began := time.Now()
	address, _ := temporalServer(t)
	c := dial(t, address)
	bin := filepath.Join(t.TempDir(), "pipeline")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}

	// The clean run, with the tables read after each step's write:
	// clean[n] is the tables after step n.
	cleanDB := openPostgres(t)
	after, snapshots := snapshotAfterEachStep(t, cleanDB)
	cleanTrace := &trace{}
	runWorkflow(t, c, uniqueID("kills-clean"), &Activities{Repo: repository.New(cleanDB), Trace: cleanTrace, AfterWrite: after}, killTimeout)
	clean := snapshots()
	steps := countSteps(t, points(cleanTrace.entries()))
	if steps != len(clean)-1 || steps < kills+kills/2 {
		t.Fatalf("the clean run has %d steps (%d snapshots): too few to kill the worker in %d of them", steps, len(clean), kills)
	}

	// Each process but the last is killed; the next one's trace says
	// whether Temporal ran the step it was killed in again.
	db := openPostgres(t)
	id := uniqueID("kills")
	tag := make([]byte, 4)
	_, _ = rand.Read(tag)
	var procs []*process
	var killedAt []time.Time
	var landed []persistencetest.Snapshot // the tables after each kill
	last := 0                             // the step of the last kill
	for len(procs) < kills {
		app := fmt.Sprintf("temporal-example-%x-%d", tag, len(procs)+1)
		p := startProgram(t, bin, address, dsnOf(t, db, app), id)
		procs = append(procs, p)
		remaining := kills - len(procs) + 1
		target := last + 1 + mathrand.IntN(max(1, (steps-last)/remaining))
		if !p.waitForStep(target) {
			t.Fatalf("the workflow ended before kill %d, at step %d of %d:\n%s\n%s", len(procs), target, steps, strings.Join(p.lines(), "\n"), p.stderr.String())
		}
		time.Sleep(mathrand.N(work * 3 / 2))
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatalf("kill %d: %v (the program ended before it)", len(procs), err)
		}
		killedAt = append(killedAt, time.Now())
		p.wait()
		// A statement the worker sent runs to its end, and commits, after
		// the worker died: read the tables once its connections are gone.
		waitForConnections(t, db, app)
		landed = append(landed, persistencetest.TakeSnapshot(t, db))
		k, ok := p.lastStep()
		if !ok || k.step <= last {
			t.Fatalf("kill %d: the trace ends at %+v, not in a step after the last kill's, %d", len(procs), k, last)
		}
		last = k.step
	}
	final := startProgram(t, bin, address, dsnOf(t, db, fmt.Sprintf("temporal-example-%x-last", tag)), id)
	final.wait()
	if !slices.ContainsFunc(final.lines(), func(l string) bool { return strings.HasPrefix(l, "workflow "+id+" done") }) {
		t.Fatalf("the last restart did not finish the workflow:\n%s\n%s", strings.Join(final.lines(), "\n"), final.stderr.String())
	}
	procs = append(procs, final)

	// Where each kill landed, from its process's last line, the tables
	// just after it, and whether the next process ran the step again.
	const (
		beforeWrite = "in a step, before its write"
		nothing     = "in a step whose write changes nothing"
		noReply     = "in a step, after the database committed its write and before the worker got the reply"
		wrote       = "in a step, after its write returned and before Temporal recorded the step"
		recorded    = "after Temporal recorded the step"
	)
	counts := map[string]int{}
	retried := 0 // attempts after the first
	for _, p := range procs {
		for _, x := range points(p.entries()) {
			if x.event == "begin" && x.attempt > 1 {
				retried++
			}
		}
	}
	for i, p := range procs[:kills] {
		k, _ := p.lastStep()
		next := points(procs[i+1].entries())
		rerun := slices.ContainsFunc(next, func(x point) bool { return x.step == k.step && x.event == "begin" && x.attempt > k.attempt })
		atBefore := len(persistencetest.Diff(clean[k.step-1], landed[i])) == 0
		atAfter := len(persistencetest.Diff(clean[k.step], landed[i])) == 0
		var where string
		switch {
		case k.event == "begin" && rerun && atBefore && atAfter:
			where = nothing
		case k.event == "begin" && rerun && atBefore:
			where = beforeWrite
		case k.event == "begin" && rerun && atAfter:
			where = noReply
		case k.event == "wrote" && rerun && atAfter:
			where = wrote
		case k.event == "wrote" && !rerun && atAfter:
			where = recorded
		default:
			t.Errorf("kill %d after %q: the next process ran the step again: %v; the tables were the clean run's before the step: %v, after it: %v",
				i+1, k.line, rerun, atBefore, atAfter)
			continue
		}
		counts[where]++
		delay := "no first step"
		if len(next) > 0 {
			delay = next[0].at.Sub(killedAt[i]).Round(100 * time.Millisecond).String()
		}
		t.Logf("kill %2d: step %2d %-28s attempt %d, %s; the next worker's first step began %s later", i+1, k.step, k.name, k.attempt, where, delay)
	}
	twice := counts[noReply] + counts[wrote]
	t.Logf("%d kills in %d steps of %d: %d after a write (%d after a commit whose reply never arrived, %d after the write returned, before Temporal recorded the step, %d after Temporal recorded it), %d before a write, %d in a step that changes nothing; %d attempts after a first; %v in all",
		kills, kills, steps, twice+counts[recorded], counts[noReply], counts[wrote], counts[recorded],
		counts[beforeWrite], counts[nothing], retried, time.Since(began).Round(time.Second))
	if retried == 0 {
		t.Error("no activity ran a second attempt: no kill landed in a step")
	}
	if twice == 0 {
		t.Error("no kill landed after a step's write and before Temporal recorded the step: no write ran twice")
	}

	want := persistencetest.TakeSnapshot(t, cleanDB)
	got := persistencetest.TakeSnapshot(t, db)
	if d := persistencetest.Diff(want, got); len(d) > 0 {
		t.Fatalf("after %d kills, %d rows differ from the clean run's:\n%s", kills, len(d), d.Describe("clean run", "killed run", 5))
	}
	if want.Rows() != rowsOfARun {
		t.Errorf("the clean run left %d rows, want the feature run's %d", want.Rows(), rowsOfARun)
	}
}

// waitForConnections waits until the server has no connection of the
// application's left.
func waitForConnections(t *testing.T, db *gorm.DB, application string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := db.Raw("SELECT count(*) FROM pg_stat_activity WHERE application_name = ?", application).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections of %s are still open 30 s after it was killed", n, application)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// process is a run of the program, and the trace it printed.
type process struct {
	cmd    *exec.Cmd
	stderr syncBuffer
	trace  trace
	done   chan struct{}
}

// startProgram starts the program, a worker of workflow id on its own
// task queue, with the pipeline's tables at dsn.
func startProgram(t *testing.T, bin, address, dsn, id string) *process {
	t.Helper()
	p := &process{done: make(chan struct{})}
	p.trace.fresh = make(chan entry, 4096)
	p.cmd = exec.Command(bin, "-address", address, "-db", dsn, "-event", event, "-workflow-id", id,
		"-work", work.String(), "-step-timeout", killTimeout.String())
	p.cmd.Stderr = &p.stderr
	dieWithTests(p.cmd)
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
			p.trace.notef("%s", s.Text())
		}
		close(p.trace.fresh)
		_ = p.cmd.Wait()
	}()
	return p
}

// waitForStep waits until the program begins an attempt of step n or a
// later one, and reports whether it did before it ended.
func (p *process) waitForStep(n int) bool {
	timeout := time.After(time.Minute)
	for {
		select {
		case e, ok := <-p.trace.fresh:
			if !ok {
				return false
			}
			if x, ok := parse(e); ok && x.event == "begin" && x.step >= n {
				return true
			}
		case <-timeout:
			return false
		}
	}
}

// wait waits for the program to exit.
func (p *process) wait() {
	<-p.done
}

func (p *process) entries() []entry { return p.trace.entries() }

func (p *process) lines() []string {
	var ls []string
	for _, e := range p.entries() {
		ls = append(ls, e.line)
	}
	return ls
}

// lastStep returns the last line of the activities' trace.
func (p *process) lastStep() (point, bool) {
	ps := points(p.entries())
	if len(ps) == 0 {
		return point{}, false
	}
	return ps[len(ps)-1], true
}
