package main

import (
	"io"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/persistencetest"
	"github.com/agentpipeline/persistence/repository"
)

// TestEveryStepFailsOnceAfterItsWrite runs the workflow in the SDK's
// testsuite, in this process and without a Temporal server, with its real
// activities on a real database: once cleanly, then with the first attempt
// of every step failing after its write, so that Temporal retries every
// step and every write runs twice. The tables must equal the clean run's.
//
// It runs under -short, on SQLite, and on PostgreSQL when there is one.
// The testsuite never runs two attempts of a step at once, nor an attempt
// after a later step: zombies need a server (TestZombieAttempts).
func TestEveryStepFailsOnceAfterItsWrite(t *testing.T) {
	for _, db := range []struct {
		name string
		open func(*testing.T) *gorm.DB
	}{
		{"SQLite", func(t *testing.T) *gorm.DB { return persistencetest.Open(t) }},
		{"PostgreSQL", openPostgres},
	} {
		t.Run(db.name, func(t *testing.T) {
			cleanDB := db.open(t)
			cleanTrace := runInTestsuite(t, &Activities{Repo: repository.New(cleanDB)})
			failingDB := db.open(t)
			tr := runInTestsuite(t, &Activities{Repo: repository.New(failingDB), FailOnce: true})

			steps := countSteps(t, points(cleanTrace.entries()))
			ps := points(tr.entries())
			for n := 1; n <= steps; n++ {
				wrote := 0
				for _, p := range ps {
					if p.step == n && p.event == "wrote" {
						wrote++
						if p.attempt != wrote {
							t.Errorf("step %d: attempt %d wrote as write #%d", n, p.attempt, wrote)
						}
					}
				}
				if wrote != 2 {
					t.Errorf("step %d wrote %d times, want twice: its first attempt failing after its write, and its retry", n, wrote)
				}
			}

			want := persistencetest.TakeSnapshot(t, cleanDB)
			got := persistencetest.TakeSnapshot(t, failingDB)
			if d := persistencetest.Diff(want, got); len(d) > 0 {
				t.Fatalf("with every step retried after its write, %d rows differ from the clean run's:\n%s", len(d), d.Describe("clean run", "retried", 5))
			}
			if want.Rows() != rowsOfARun {
				t.Errorf("the clean run left %d rows, want the feature run's %d", want.Rows(), rowsOfARun)
			}
			t.Logf("%d steps, each written twice, the first attempt failing after its write: the tables equal the clean run's", steps)
		})
	}
}

// runInTestsuite runs the workflow to its end in the testsuite with acts,
// and returns the activities' trace.
func runInTestsuite(t *testing.T, acts *Activities) *trace {
	t.Helper()
	tr := &trace{}
	acts.Trace = tr
	var s testsuite.WorkflowTestSuite
	s.SetLogger(quietLogger(io.Discard))
	env := s.NewTestWorkflowEnvironment()
	env.SetTestTimeout(time.Minute)
	env.RegisterWorkflowWithOptions(FeatureRun, workflow.RegisterOptions{Name: workflowName})
	env.RegisterActivity(acts)
	env.ExecuteWorkflow(workflowName, Input{EventID: event})
	if !env.IsWorkflowCompleted() {
		t.Fatal("the workflow did not complete")
	}
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("the workflow failed: %v", err)
	}
	var runID string
	if err := env.GetWorkflowResult(&runID); err != nil {
		t.Fatal(err)
	}
	if want := repository.StableID(event, "run").String(); runID != want {
		t.Errorf("the workflow returned %s, want the run %s", runID, want)
	}
	return tr
}
