package main

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/agentpipeline/persistence/persistencetest"
	"github.com/agentpipeline/persistence/repository"
)

// TestResetToTheFirstWorkflowTaskChangesNothing runs the workflow to its
// end on the dev server, then resets it with
//
//	temporal workflow reset --type FirstWorkflowTask
//
// which starts a new run of the workflow from its first workflow task,
// with none of the first run's activities recorded: every step runs
// again, at the same positions, after every later step ran. The tables
// must not change, not even a row's updated_at.
func TestResetToTheFirstWorkflowTaskChangesNothing(t *testing.T) {
	address, cli := temporalServer(t)
	c := dial(t, address)
	db := openPostgres(t)
	tr := &trace{}
	id := uniqueID("reset")
	first := runWorkflow(t, c, id, &Activities{Repo: repository.New(db), Trace: tr}, 2*time.Second)
	steps := countSteps(t, points(tr.entries()))
	before := persistencetest.TakeSnapshot(t, db, persistencetest.Exact())
	ran := len(tr.entries())

	began := time.Now()
	out, err := exec.CommandContext(t.Context(), cli, "workflow", "reset",
		"--workflow-id", id, "--type", "FirstWorkflowTask", "--reason", "replay every step",
		"--address", address, "--namespace", "default").CombinedOutput()
	if err != nil {
		t.Fatalf("temporal workflow reset: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	desc, err := c.DescribeWorkflow(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	second := desc.WorkflowExecution.RunID
	if second == first {
		t.Fatalf("the reset made no new run: the workflow's run is still %s\n%s", first, out)
	}
	// The worker of the first run, still running, runs the new one.
	var runID string
	if err := c.GetWorkflow(ctx, id, second).Get(ctx, &runID); err != nil {
		t.Fatalf("the reset run %s: %v", second, err)
	}

	again := points(tr.entries()[ran:])
	for n := 1; n <= steps; n++ {
		if _, ok := findStep(again, n, "wrote"); !ok {
			t.Errorf("the reset run did not run step %d again", n)
		}
	}
	after := persistencetest.TakeSnapshot(t, db, persistencetest.Exact())
	if d := persistencetest.Diff(before, after); len(d) > 0 {
		t.Fatalf("after the reset ran every step again, %d rows differ from the first run's:\n%s", len(d), d.Describe("first run", "after the reset", 5))
	}
	if before.Rows() != rowsOfARun {
		t.Errorf("the first run left %d rows, want the feature run's %d", before.Rows(), rowsOfARun)
	}
	t.Logf("the reset run %s ran the %d steps again in %v; not a column of the %d rows changed",
		second, steps, time.Since(began).Round(time.Millisecond), before.Rows())
}

// findStep returns the first line of step n with event.
func findStep(ps []point, n int, event string) (point, bool) {
	for _, p := range ps {
		if p.step == n && p.event == event {
			return p, true
		}
	}
	return point{}, false
}
