package repository_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// BenchmarkRunTimeline reads the timeline of a run of 5 phases and 500
// agent invocations.
func BenchmarkRunTimeline(b *testing.B) {
	for _, d := range dbtest.All() {
		b.Run("db="+d.Name, func(b *testing.B) {
			db := d.Open(b)
			ctx := b.Context()
			require.NoError(b, migrate.Up(ctx, db))
			repo := repository.New(db)
			run, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan"})
			require.NoError(b, err)
			var phases []uuid.UUID
			for p := range 5 {
				id, err := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{FeatureRunID: run, Phase: fmt.Sprint("phase-", p)})
				require.NoError(b, err)
				phases = append(phases, id)
			}
			for i := range 500 {
				id, err := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: run, PhaseResultID: &phases[i%5], Agent: "coder", Model: "m"})
				require.NoError(b, err)
				require.NoError(b, repo.CompleteAgentInvocation(ctx, id, repository.InvocationResult{
					Steps:     []any{map[string]any{"thought": "read"}, map[string]any{"thought": "edit"}},
					ToolCalls: []any{map[string]any{"tool": "bash", "args": "go test ./..."}},
				}))
			}
			b.ReportAllocs()
			for b.Loop() {
				tl, err := repo.RunTimeline(ctx, run)
				if err != nil || len(tl.Phases) != 5 {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkExpireCTAEvents drains 10,000 due CTA events, 1,000 per call.
func BenchmarkExpireCTAEvents(b *testing.B) {
	for _, d := range dbtest.All() {
		b.Run("db="+d.Name, func(b *testing.B) {
			db := d.Open(b)
			ctx := b.Context()
			require.NoError(b, migrate.Up(ctx, db))
			repo := repository.New(db)
			deadline := time.Now().UTC().Add(-time.Minute)
			for r := range 100 {
				run, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan"})
				require.NoError(b, err)
				for i := range 100 {
					require.NoError(b, repo.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: fmt.Sprintf("cta-%d-%d", r, i), FeatureRunID: run, ExpiresAt: deadline}))
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				require.NoError(b, db.Exec("UPDATE cta_events SET status = 'pending', resolved_at = NULL").Error)
				b.StartTimer()
				total := 0
				for {
					ids, err := repo.ExpireCTAEvents(ctx, time.Now(), 1000)
					if err != nil {
						b.Fatal(err)
					}
					total += len(ids)
					if len(ids) < 1000 {
						break
					}
				}
				if total != 10_000 {
					b.Fatalf("expired %d events, want 10000", total)
				}
			}
		})
	}
}
