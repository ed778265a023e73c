// Command dbos runs one feature run of the agent pipeline as a durable
// workflow on DBOS Transact (github.com/dbos-inc/dbos-transact-golang),
// over PostgreSQL, each write to the pipeline's tables in a DBOS step of
// its own.
//
// Kill it at any moment and start it again: DBOS recovers the workflow,
// skips the steps it recorded and runs the interrupted one again. When the
// process died after a step's write and before DBOS recorded the step, the
// write runs twice, which the repository's replay safety makes harmless.
// The test in this directory does that twenty times and compares the
// tables with a run that was never killed.
//
//	go run . -db postgres://postgres@127.0.0.1:5432/app -system-db postgres://postgres@127.0.0.1:5432/app_dbos
//
// The databases must exist. The program prints a line when each step
// begins, when its write returned, and when DBOS recorded the step (or,
// after a restart, found it recorded).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

func main() {
	db := flag.String("db", os.Getenv("DATABASE_URL"), "the pipeline's PostgreSQL database (also read from DATABASE_URL)")
	systemDB := flag.String("system-db", os.Getenv("DBOS_SYSTEM_DATABASE_URL"), "DBOS's PostgreSQL system database (also read from DBOS_SYSTEM_DATABASE_URL)")
	event := flag.String("event", "feature-request/1", "the ID of the event that starts the feature run: the workflow's ID")
	work := flag.Duration("work", 0, "the longest each step works before its write, and again after it")
	flag.Parse()
	if *db == "" || *systemDB == "" {
		fmt.Fprintln(os.Stderr, "dbos: both -db and -system-db are required")
		os.Exit(2)
	}
	if err := run(context.Background(), *db, *systemDB, *event, *work, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dbos:", err)
		os.Exit(1)
	}
}

// run runs the feature run of event to its end, starting the workflow or
// recovering it.
func run(ctx context.Context, dsn, systemDSN, event string, work time.Duration, out io.Writer) error {
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return fmt.Errorf("open the pipeline's database: %w", err)
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	if err := migrate.Up(ctx, db); err != nil {
		return err
	}
	p := &pipeline{repo: repository.New(db), work: work, trace: out}

	dctx, err := dbos.NewContext(ctx, dbos.Config{
		AppName:     "agent-pipeline",
		DatabaseURL: systemDSN,
		// Recovery resumes the workflows of this version only: pin it,
		// rather than let DBOS derive it from the binary.
		ApplicationVersion: "1",
		Logger:             slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	dbos.RegisterWorkflow(dctx, p.featureRun, dbos.WithWorkflowName("feature-run"))
	// Launch recovers the workflows this executor left pending when it
	// died, our feature run among them, and resumes them in the
	// background.
	if err := dbos.Launch(dctx); err != nil {
		return err
	}
	defer func() { _ = dbos.Shutdown(dctx, 5*time.Second) }()

	// The event's ID is the workflow's: started once, whatever the
	// restarts.
	handle, err := dbos.RetrieveWorkflow[string](dctx, event)
	if errors.Is(err, dbos.ErrNonExistentWorkflow) {
		fmt.Fprintf(out, "workflow %s started\n", event)
		handle, err = dbos.RunWorkflow(dctx, p.featureRun, input{EventID: event}, dbos.WithWorkflowID(event))
	} else if err == nil {
		fmt.Fprintf(out, "workflow %s recovered\n", event)
	}
	if err != nil {
		return err
	}
	runID, err := handle.GetResult()
	if err != nil {
		return fmt.Errorf("workflow %s: %w", event, err)
	}
	fmt.Fprintf(out, "workflow %s done: feature run %s\n", event, runID)
	return nil
}
