package persistencetest_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/agentpipeline/persistence/persistencetest"
	"github.com/agentpipeline/persistence/repository"
)

// featureSteps are the steps of a workflow triggered by the event
// eventID. Every ID is derived from the event and every value is fixed, so
// the steps are replay-safe.
func featureSteps(eventID string) []persistencetest.Step {
	run := repository.StableID(eventID, "run")
	plan := repository.StableID(eventID, "phase", "plan")
	return []persistencetest.Step{
		{Name: "create run", Run: func(ctx context.Context, repo *repository.Repository) error {
			_, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: run, Phase: "plan"})
			return err
		}},
		{Name: "start plan", Run: func(ctx context.Context, repo *repository.Repository) error {
			_, err := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: plan, FeatureRunID: run, Phase: "plan"})
			return err
		}},
		{Name: "remember", Run: func(ctx context.Context, repo *repository.Repository) error {
			return repo.UpdateFeatureRunMemories(ctx, run, []any{"uses Go modules"})
		}},
		{Name: "pass plan", Run: func(ctx context.Context, repo *repository.Repository) error {
			return repo.PassPhaseResult(ctx, plan, map[string]any{"steps": 3})
		}},
	}
}

// testFeatureSteps is the test you would write, with t *testing.T.
func testFeatureSteps(t testing.TB) {
	persistencetest.RequireReplaySafe(t, persistencetest.Open, featureSteps("evt_1"))
}

// testTaggingStep adds a step with an update of its own, which tags the
// run's phase again each time the step runs.
func testTaggingStep(t testing.TB) {
	tag := persistencetest.Step{Name: "tag", Run: func(ctx context.Context, repo *repository.Repository) error {
		return repo.DB().WithContext(ctx).Exec("UPDATE feature_runs SET phase = phase || '!'").Error
	}}
	persistencetest.RequireReplaySafe(t, persistencetest.Open, append(featureSteps("evt_1"), tag))
}

// Testing a workflow's steps: RequireReplaySafe runs them once, then twice
// each, on 8 goroutines each, crashed after each, and each once more after
// the last, as a zombie, and fails the test when a database differs from
// the clean run's.
func Example() {
	runTest(testFeatureSteps)
	runTest(testTaggingStep)
	// Output:
	// PASS
	// FAIL: persistencetest: not replay-safe when each step runs twice in a row: after step 5 of 5, "tag", ran twice, the database differs from the clean run's in 1 row:
	//     feature_runs c361dbd5-e614-56b1-99c8-cc9c0446661f: differs
	//         column   clean run   replay
	//         phase    "plan!"     "plan!!"
	// FAIL: persistencetest: not replay-safe when each step runs on 8 goroutines at once: after step 5 of 5, "tag", ran on 8 goroutines, the database differs from the clean run's in 1 row:
	// FAIL: persistencetest: not replay-safe when a crash after a step's writes resumes at that step: crashed after step 5 of 5, "tag", and after it ran again, the database differs from the clean run's in 1 row:
	// FAIL: persistencetest: not replay-safe when each step runs again as a zombie after each later step: step 5 of 5, "tag", ran again after the last step, the database differs from the clean run's in 1 row:
}

// runTest runs test as go test would, and prints what it reports: the
// whole of the first failure, the first line of the others.
func runTest(test func(testing.TB)) {
	t := &exampleT{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		test(t)
	}()
	<-done
	for _, f := range slices.Backward(t.cleanups) {
		f()
	}
	if len(t.failures) == 0 {
		fmt.Println("PASS")
	}
	for i, msg := range t.failures {
		lines := strings.Split(msg, "\n")
		fmt.Println("FAIL:", lines[0])
		if i == 0 {
			// The rows that differ, without the closing advice.
			for _, line := range lines[1 : len(lines)-1] {
				fmt.Println("   ", line)
			}
		}
	}
}

// exampleT stands in for the *testing.T of a test, which an example does
// not have.
type exampleT struct {
	testing.TB // not set: only the methods below are called
	cleanups   []func()
	failures   []string
}

func (*exampleT) Helper()                  {}
func (*exampleT) Context() context.Context { return context.Background() }
func (t *exampleT) Cleanup(f func())       { t.cleanups = append(t.cleanups, f) }
func (*exampleT) FailNow()                 { runtime.Goexit() }

func (t *exampleT) Errorf(format string, args ...any) {
	t.failures = append(t.failures, fmt.Sprintf(format, args...))
}

func (t *exampleT) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	t.FailNow()
}
