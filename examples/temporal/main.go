// Command temporal runs one feature run of the agent pipeline as a durable
// workflow on Temporal (go.temporal.io/sdk), over PostgreSQL, each write to
// the pipeline's tables in an activity of its own, made at the activity's
// position in the workflow with repo.AtStep.
//
// It starts the workflow, or finds it started, runs a worker for it until
// it ends, prints its result and exits. Kill it at any moment and start it
// again: Temporal gives the new worker the workflow, which it replays, and
// retries the activity that was running once its attempt timed out. When
// the worker died after an activity's write and before Temporal recorded
// the activity's completion, the write runs twice, which the repository's
// replay safety makes harmless. The tests in this directory do that twenty
// times, make attempts that outlive their timeout write after later steps,
// and reset a finished workflow to its start, and compare the tables with
// a run that none of that happened to.
//
//	temporal server start-dev --headless --port 7233 &
//	go run . -address 127.0.0.1:7233 -db postgres://postgres@127.0.0.1:5432/app
//
// The database must exist. The program prints a line when each attempt of
// an activity begins and when its write returned.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// options are the program's flags.
type options struct {
	address, namespace, db       string
	event, workflowID, taskQueue string
	work, stepTimeout            time.Duration
	unfenced                     bool
}

func main() {
	var o options
	flag.StringVar(&o.address, "address", envOr("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "the Temporal server's host:port (also read from TEMPORAL_ADDRESS)")
	flag.StringVar(&o.namespace, "namespace", "default", "the Temporal namespace")
	flag.StringVar(&o.db, "db", os.Getenv("DATABASE_URL"), "the pipeline's PostgreSQL database (also read from DATABASE_URL)")
	flag.StringVar(&o.event, "event", "feature-request/1", "the ID of the event that starts the feature run")
	flag.StringVar(&o.workflowID, "workflow-id", "", "the workflow's ID (default: the event's ID)")
	flag.StringVar(&o.taskQueue, "task-queue", "", "the task queue of the workflow and its activities (default: the workflow's ID)")
	flag.DurationVar(&o.work, "work", 0, "the longest each step works before its write, and again after it")
	flag.DurationVar(&o.stepTimeout, "step-timeout", 2*time.Second, "the StartToCloseTimeout of each activity attempt, when the program starts the workflow")
	flag.BoolVar(&o.unfenced, "unfenced", false, "write without repo.AtStep, so that a late attempt can take a row back")
	flag.Parse()
	if o.db == "" {
		fmt.Fprintln(os.Stderr, "temporal: -db is required")
		os.Exit(2)
	}
	if o.workflowID == "" {
		o.workflowID = o.event
	}
	if o.taskQueue == "" {
		o.taskQueue = o.workflowID
	}
	if err := run(context.Background(), o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "temporal:", err)
		os.Exit(1)
	}
}

func envOr(name, otherwise string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return otherwise
}

// run runs the feature run of o.event to its end, starting the workflow
// or finding it started.
func run(ctx context.Context, o options, out io.Writer) error {
	db, err := gorm.Open(postgres.Open(o.db), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return fmt.Errorf("open the pipeline's database: %w", err)
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	if err := migrate.Up(ctx, db); err != nil {
		return err
	}

	c, err := client.DialContext(ctx, client.Options{HostPort: o.address, Namespace: o.namespace, Logger: quietLogger(os.Stderr)})
	if err != nil {
		return fmt.Errorf("connect to Temporal at %s: %w", o.address, err)
	}
	defer c.Close()
	w := newWorker(c, o.taskQueue, &Activities{Repo: repository.New(db), Unfenced: o.unfenced, Work: o.work, Trace: out})
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()

	// The workflow's ID is the event's: started once, whatever the
	// restarts. A running workflow is joined (UseExisting); a finished
	// one is not run again (RejectDuplicate), and ExecuteWorkflow then
	// returns its last run.
	wr, err := c.ExecuteWorkflow(ctx, startOptions(o.workflowID, o.taskQueue), workflowName, Input{EventID: o.event, StepTimeout: o.stepTimeout})
	if err != nil {
		return fmt.Errorf("start workflow %s: %w", o.workflowID, err)
	}
	fmt.Fprintf(out, "workflow %s run %s\n", o.workflowID, wr.GetRunID())
	var runID string
	if err := wr.Get(ctx, &runID); err != nil {
		return fmt.Errorf("workflow %s: %w", o.workflowID, err)
	}
	fmt.Fprintf(out, "workflow %s done: feature run %s\n", o.workflowID, runID)
	return nil
}

// startOptions are the options the feature run's workflow id is started
// with on taskQueue.
func startOptions(id, taskQueue string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		// A workflow task whose worker died is given to another worker
		// after this timeout: 10 s unless set.
		WorkflowTaskTimeout: 2 * time.Second,
	}
}

// newWorker returns a worker of the feature-run workflow and its
// activities a on taskQueue.
func newWorker(c client.Client, taskQueue string, a *Activities) worker.Worker {
	w := worker.New(c, taskQueue, worker.Options{
		// A worker that replayed a workflow gets its next workflow tasks
		// on a queue of its own; when it dies, they go back to taskQueue
		// after this timeout: 5 s unless set.
		StickyScheduleToStartTimeout: time.Second,
	})
	w.RegisterWorkflowWithOptions(FeatureRun, workflow.RegisterOptions{Name: workflowName})
	w.RegisterActivity(a)
	return w
}

// quietLogger is the SDK's logger: warnings and errors only, to w.
func quietLogger(w io.Writer) tlog.Logger {
	return tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn})))
}
