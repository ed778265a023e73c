// Package workload simulates the writes of durable pipeline workflows, for
// the reliability tests, the benchmarks and the example to drive.
package workload

import (
	"context"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// Store is the fifteen writes of the persistence contract, so that a
// workload can drive the repository or a hand-written baseline alike.
type Store interface {
	CreateFeatureRun(ctx context.Context, in repository.NewFeatureRun) (uuid.UUID, error)
	UpdateFeatureRunPhase(ctx context.Context, runID uuid.UUID, phase string) error
	UpdateFeatureRunMemories(ctx context.Context, runID uuid.UUID, memories []any) error
	CompleteFeatureRun(ctx context.Context, runID uuid.UUID) error
	FailFeatureRun(ctx context.Context, runID uuid.UUID) error
	CreateSandboxRecord(ctx context.Context, in repository.NewSandbox) error
	UpdateSandboxStatus(ctx context.Context, sandboxID string, status models.SandboxStatus) error
	CreatePhaseResult(ctx context.Context, in repository.NewPhaseResult) (uuid.UUID, error)
	PassPhaseResult(ctx context.Context, phaseResultID uuid.UUID, output any) error
	FailPhaseResult(ctx context.Context, phaseResultID uuid.UUID) error
	CreateAgentInvocation(ctx context.Context, in repository.NewAgentInvocation) (uuid.UUID, error)
	CompleteAgentInvocation(ctx context.Context, invocationID uuid.UUID, result repository.InvocationResult) error
	CreateCTAEvent(ctx context.Context, in repository.NewCTAEvent) error
	CompleteCTAEvent(ctx context.Context, ctaID string, responseData any) error
	TimeoutCTAEvent(ctx context.Context, ctaID string) error
}

var _ Store = (*repository.Repository)(nil)

// Step is one step of a durable workflow: a unit the engine may re-execute
// after a crash, a timeout or a retry.
type Step struct {
	// Name identifies the step within its workflow, such as "phase/plan/start".
	Name string
	// Run executes the step's write against s.
	Run func(ctx context.Context, s Store) error
}
