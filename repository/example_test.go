package repository_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// openExample opens a migrated in-memory SQLite database for the examples.
func openExample() (*repository.Repository, func()) {
	db, err := gorm.Open(sqlite.Open("file::memory:?_foreign_keys=on"), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		panic(err)
	}
	sqlDB, _ := db.DB()
	sqlDB.SetMaxOpenConns(1)
	if err := migrate.Up(context.Background(), db); err != nil {
		panic(err)
	}
	return repository.New(db), func() { sqlDB.Close() }
}

// Inside a workflow step, derive IDs from the event that triggered the
// workflow and from the step, so that a re-executed step finds the rows its
// first execution wrote.
func ExampleStableID() {
	eventID := "evt_01HZX3"
	runID := repository.StableID(eventID, "feature-run")
	fmt.Println(runID)
	fmt.Println(runID == repository.StableID(eventID, "feature-run"))
	fmt.Println(repository.StableID("a", "bc") == repository.StableID("ab", "c"))
	// Output:
	// a9469407-04b2-57d2-9c1f-4c7505ca4065
	// true
	// false
}

// Creating a run and moving it through its phases. Every call may be
// repeated: the second time it changes nothing and returns nil.
func ExampleRepository_CreateFeatureRun() {
	repo, done := openExample()
	defer done()
	ctx := context.Background()

	runID := repository.StableID("evt_1", "feature-run")
	for range 2 { // a step re-executed after a crash
		if _, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: runID, Phase: "plan"}); err != nil {
			panic(err)
		}
		if err := repo.UpdateFeatureRunPhase(ctx, runID, "implement"); err != nil {
			panic(err)
		}
		if err := repo.UpdateFeatureRunMemories(ctx, runID, []any{"uses Go modules", map[string]any{"style": "gofmt"}}); err != nil {
			panic(err)
		}
	}
	// JSON-equal values are not appended twice, whatever their key order.
	if err := repo.UpdateFeatureRunMemories(ctx, runID, []any{"uses Go modules", "tests in testify"}); err != nil {
		panic(err)
	}
	if err := repo.CompleteFeatureRun(ctx, runID); err != nil {
		panic(err)
	}
	err := repo.FailFeatureRun(ctx, runID) // a late failure handler
	fmt.Println(errors.Is(err, repository.ErrInvalidTransition))

	run, _ := repo.GetFeatureRun(ctx, runID)
	fmt.Println(run.Status, run.Phase, string(run.Memories))
	// Output:
	// true
	// completed implement ["uses Go modules",{"style":"gofmt"},"tests in testify"]
}

// Recording a phase and the agents that ran in it.
func ExampleRepository_CreateAgentInvocation() {
	repo, done := openExample()
	defer done()
	ctx := context.Background()
	runID, _ := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: repository.StableID("evt_2", "run"), Phase: "plan"})

	phaseID, _ := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: repository.StableID("evt_2", "phase", "plan"), FeatureRunID: runID, Phase: "plan"})
	invID, _ := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{
		ID: repository.StableID("evt_2", "plan", "planner"), FeatureRunID: runID, PhaseResultID: &phaseID,
		Agent: "planner", Model: "claude-opus-4", Input: map[string]any{"task": "add a health check"},
	})
	if err := repo.CompleteAgentInvocation(ctx, invID, repository.InvocationResult{
		Steps:        []any{"read the router", "draft the plan"},
		ToolCalls:    []any{map[string]any{"tool": "read_file", "path": "router.go"}},
		InputTokens:  1800,
		OutputTokens: 540,
		CostNanoUSD:  67_500_000,
	}); err != nil {
		panic(err)
	}
	if err := repo.PassPhaseResult(ctx, phaseID, map[string]any{"steps": 3}); err != nil {
		panic(err)
	}

	usage, _ := repo.RunUsage(ctx, runID)
	fmt.Println(usage.Invocations, usage.TotalTokens(), usage.CostUSD())
	// Output: 1 2340 0.067500000
}

// Tracking a sandbox through its lifecycle.
func ExampleRepository_UpdateSandboxStatus() {
	repo, done := openExample()
	defer done()
	ctx := context.Background()
	runID, _ := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "implement"})

	if err := repo.CreateSandboxRecord(ctx, repository.NewSandbox{ID: "sbx-42", FeatureRunID: runID, Provider: "e2b"}); err != nil {
		panic(err)
	}
	for _, s := range []models.SandboxStatus{models.SandboxRunning, models.SandboxPaused, models.SandboxRunning, models.SandboxStopped} {
		if err := repo.UpdateSandboxStatus(ctx, "sbx-42", s); err != nil {
			panic(err)
		}
	}
	err := repo.UpdateSandboxStatus(ctx, "sbx-42", models.SandboxRunning)
	var terr *repository.TransitionError
	fmt.Println(errors.As(err, &terr), terr.From)
	// Output: true stopped
}

// A CTA's timeout racing the person's answer: exactly one wins. When the
// timeout loses, the workflow goes on with the answer.
func ExampleRepository_TimeoutCTAEvent() {
	repo, done := openExample()
	defer done()
	ctx := context.Background()
	runID, _ := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "review"})
	if err := repo.CreateCTAEvent(ctx, repository.NewCTAEvent{
		ID: "approve-1", FeatureRunID: runID, Kind: "approval",
		RequestData: map[string]any{"question": "Ship it?"}, ExpiresAt: time.Now().Add(time.Hour),
	}); err != nil {
		panic(err)
	}

	// The person answers a moment before the workflow's timeout fires.
	if err := repo.CompleteCTAEvent(ctx, "approve-1", map[string]any{"approved": true}); err != nil {
		panic(err)
	}
	err := repo.TimeoutCTAEvent(ctx, "approve-1")
	if errors.Is(err, repository.ErrInvalidTransition) {
		cta, _ := repo.GetCTAEvent(ctx, "approve-1")
		fmt.Println("answered in time:", cta.Status, string(cta.ResponseData))
	}
	// Output: answered in time: completed {"approved":true}
}
