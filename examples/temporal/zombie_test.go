package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/persistencetest"
	"github.com/agentpipeline/persistence/repository"
)

// zombieTimeout is the activities' StartToCloseTimeout in the zombie
// test: how long a zombie's first attempt runs before Temporal retries it.
const zombieTimeout = 2 * time.Second

// zombiePlan names, for each step whose first attempt is a zombie, the
// later step after whose write the zombie's write lands: two moves that
// take a row back when they land late.
var zombiePlan = []struct{ zombie, after string }{
	// The pause while the person reads the plan, landing after the
	// resume once they answered: the sandbox would stay paused through
	// the implement and test phases.
	{"sandbox/pause", "sandbox/resume"},
	// Entering the test phase, landing after the review phase was
	// entered: the run would end in the test phase.
	{"test/enter", "review/enter"},
}

// TestZombieAttempts runs the workflow on the dev server with the first
// attempt of two steps made a zombie: it outlives its StartToCloseTimeout,
// so Temporal retries the step while it still runs, and the workflow goes
// on once the retry completed; the zombie then writes, with
// context.WithoutCancel, as code that saves its work whatever its context
// says does, after a later step's write. Each zombie moves a row back: a
// sandbox to paused after it was resumed, and the run to the test phase
// after it entered review.
//
// Fenced (each activity writing through repo.AtStep(position)), the
// zombies' writes change nothing, and the tables equal those of a clean
// run. Unfenced, the same zombies take the rows back: the subtest asserts
// the damage.
func TestZombieAttempts(t *testing.T) {
	address, _ := temporalServer(t)
	c := dial(t, address)
	for _, fenced := range []bool{true, false} {
		name := "fenced"
		if !fenced {
			name = "unfenced"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cleanDB := openPostgres(t)
			runWorkflow(t, c, uniqueID("zombies-clean"), &Activities{Repo: repository.New(cleanDB), Unfenced: !fenced}, zombieTimeout)

			db := openPostgres(t)
			tr := &trace{}
			z := newZombies(t, db, tr)
			acts := &Activities{Repo: repository.New(db), Unfenced: !fenced, Trace: tr, BeforeWrite: z.beforeWrite, AfterWrite: z.afterWrite}
			runWorkflow(t, c, uniqueID("zombies-"+name), acts, zombieTimeout)
			landed := z.wait()

			// The timing: each zombie ran past its timeout, its retry began
			// and wrote while it still ran, and it wrote after the later
			// step's write.
			ps := points(tr.entries())
			for _, p := range zombiePlan {
				at := func(name string, attempt int, event string) time.Time {
					t.Helper()
					x, ok := find(ps, name, attempt, event)
					if !ok {
						t.Fatalf("the trace has no %s attempt %d %s:\n%s", name, attempt, event, dump(tr))
					}
					return x.at
				}
				begin, timedOut, wrote := at(p.zombie, 1, "begin"), at(p.zombie, 1, "timed out"), at(p.zombie, 1, "wrote")
				retry, retried := at(p.zombie, 2, "begin"), at(p.zombie, 2, "wrote")
				later := at(p.after, 1, "wrote")
				if !inOrder(begin, timedOut, retry, retried, later, wrote) {
					t.Errorf("%s: not a zombie overlapping its retry and landing after %s:\n%s", p.zombie, p.after, dump(tr))
				}
				ms := func(x time.Time) string { return fmt.Sprintf("%4d ms", x.Sub(begin).Milliseconds()) }
				t.Logf("%-14s attempt 1 from 0 ms to %s (timed out at %s); attempt 2 from %s to %s; %s wrote at %s, the zombie %s after",
					p.zombie, ms(wrote), ms(timedOut), ms(retry), ms(retried), p.after, ms(later), wrote.Sub(later).Round(time.Millisecond))
			}

			want := persistencetest.TakeSnapshot(t, cleanDB)
			got := persistencetest.TakeSnapshot(t, db)
			d := persistencetest.Diff(want, got)
			if fenced {
				if landed["sandbox/pause"] != "running" || landed["test/enter"] != "review" {
					t.Errorf("just after the zombies wrote, the sandbox was %s and the run in phase %s: want running, and review", landed["sandbox/pause"], landed["test/enter"])
				}
				if len(d) > 0 {
					t.Fatalf("after the zombies, %d rows differ from the clean run's:\n%s", len(d), d.Describe("clean run", "zombies", 5))
				}
				if want.Rows() != rowsOfARun {
					t.Errorf("the clean run left %d rows, want the feature run's %d", want.Rows(), rowsOfARun)
				}
				t.Logf("fenced: both zombies wrote after later steps and changed nothing; the %d rows equal the clean run's", got.Rows())
				return
			}
			// Unfenced, the zombies took the rows back: the sandbox was
			// paused again through two phases, until the workflow stopped
			// it, and the run ended in the test phase.
			if landed["sandbox/pause"] != "paused" || landed["test/enter"] != "test" {
				t.Errorf("unfenced, just after the zombies wrote, the sandbox was %s and the run in phase %s: want the damage, paused and test", landed["sandbox/pause"], landed["test/enter"])
			}
			if len(d) != 1 || describeRow(d[0]) != "feature_runs "+repository.StableID(event, "run").String()+" (phase)" {
				t.Errorf("unfenced, want the run's row alone to differ from the clean run's, in its phase; got %d rows:\n%s", len(d), d.Describe("clean run", "zombies", 5))
			}
			t.Logf("unfenced: the zombies paused the running sandbox and took the run back to the test phase; %d row differs from the clean run's:\n%s", len(d), d.Describe("clean run", "zombies", 5))
		})
	}
}

// zombies makes the first attempt of each step of zombiePlan a zombie.
type zombies struct {
	t    *testing.T
	repo *repository.Repository
	tr   *trace
	// after maps a zombie step to the step it lands after, and later
	// maps that step back.
	after, later map[string]string
	// wrote is closed when the later step's first attempt wrote; landed
	// when the zombie's write returned.
	wrote, landed map[string]chan struct{}
	mu            sync.Mutex
	// seen is the state of the zombie's row just after its write: the
	// sandbox's status, or the run's phase.
	seen map[string]string
	errs []error
}

func newZombies(t *testing.T, db *gorm.DB, tr *trace) *zombies {
	z := &zombies{t: t, repo: repository.New(db), tr: tr,
		after: map[string]string{}, later: map[string]string{},
		wrote: map[string]chan struct{}{}, landed: map[string]chan struct{}{}, seen: map[string]string{}}
	for _, p := range zombiePlan {
		z.after[p.zombie], z.later[p.after] = p.after, p.zombie
		z.wrote[p.after], z.landed[p.zombie] = make(chan struct{}), make(chan struct{})
	}
	return z
}

// beforeWrite holds a zombie's write until its attempt has timed out and
// the later step wrote, and gives it a context that its attempt's end
// does not cancel.
func (z *zombies) beforeWrite(ctx context.Context, s Step) context.Context {
	later, ok := z.after[s.Name]
	if !ok || activity.GetInfo(ctx).Attempt != 1 {
		return ctx
	}
	<-ctx.Done() // the StartToCloseTimeout: Temporal retries the step
	z.tr.notef("step %d %s attempt 1 timed out", s.Position, s.Name)
	select {
	case <-z.wrote[later]:
	case <-time.After(time.Minute):
		z.fail(fmt.Errorf("%s never wrote", later))
	}
	return context.WithoutCancel(ctx)
}

// afterWrite lets a zombie write once the later step wrote, and holds the
// later step until it did, so that the zombie lands before the steps after
// it; and reads the zombie's row once it landed.
func (z *zombies) afterWrite(ctx context.Context, s Step, err error) {
	attempt := activity.GetInfo(ctx).Attempt
	if zombie, ok := z.later[s.Name]; ok && attempt == 1 {
		close(z.wrote[s.Name])
		select {
		case <-z.landed[zombie]:
		case <-time.After(time.Minute):
			z.fail(fmt.Errorf("the zombie %s never wrote", zombie))
		}
	}
	if _, ok := z.after[s.Name]; !ok || attempt != 1 {
		return
	}
	defer close(z.landed[s.Name])
	if err != nil {
		z.fail(fmt.Errorf("the zombie %s: %w", s.Name, err))
		return
	}
	ctx = context.Background()
	var state string
	if strings.HasPrefix(s.Name, "sandbox/") {
		sandbox, err := z.repo.GetSandbox(ctx, "sbx-"+repository.StableID(event, "sandbox").String()[:8])
		if err != nil {
			z.fail(err)
			return
		}
		state = string(sandbox.Status)
	} else {
		run, err := z.repo.GetFeatureRun(ctx, repository.StableID(event, "run"))
		if err != nil {
			z.fail(err)
			return
		}
		state = run.Phase
	}
	z.mu.Lock()
	z.seen[s.Name] = state
	z.mu.Unlock()
}

func (z *zombies) fail(err error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.errs = append(z.errs, err)
}

// wait waits for every zombie to write, and returns the state of its row
// just after.
func (z *zombies) wait() map[string]string {
	z.t.Helper()
	for name, landed := range z.landed {
		select {
		case <-landed:
		case <-time.After(time.Minute):
			z.t.Fatalf("the zombie %s never wrote", name)
		}
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, err := range z.errs {
		z.t.Error(err)
	}
	if len(z.errs) > 0 {
		z.t.FailNow()
	}
	return z.seen
}

// inOrder reports whether times are in increasing order.
func inOrder(times ...time.Time) bool {
	for i := 1; i < len(times); i++ {
		if !times[i-1].Before(times[i]) {
			return false
		}
	}
	return true
}

// dump is the trace, for a failure.
func dump(tr *trace) string {
	var b strings.Builder
	var first time.Time
	for i, e := range tr.entries() {
		if i == 0 {
			first = e.at
		}
		fmt.Fprintf(&b, "%6d ms %s\n", e.at.Sub(first).Milliseconds(), e.line)
	}
	return b.String()
}
