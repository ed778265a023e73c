package repository_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// TestRunListReads checks the reads behind a run list, on every database:
// the phase filter of ListFeatureRuns, with every status set and every
// page, CountFeatureRuns and its limit, and SummarizeRuns.
func TestRunListReads(t *testing.T) {
	t.Parallel()
	for _, d := range dbtest.All() {
		t.Run(d.Name, func(t *testing.T) {
			ctx := t.Context()
			db := d.Open(t)
			require.NoError(t, migrate.Up(ctx, db))
			repo := repository.New(db)

			// 12 runs: phases plan and review in turn, statuses in a cycle
			// of three, created in order.
			var all []models.FeatureRun
			for i := range 12 {
				phase := []string{"plan", "review"}[i%2]
				id, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: phase})
				require.NoError(t, err)
				switch i % 3 {
				case 1:
					require.NoError(t, repo.CompleteFeatureRun(ctx, id))
				case 2:
					require.NoError(t, repo.FailFeatureRun(ctx, id))
				}
				run, err := repo.GetFeatureRun(ctx, id)
				require.NoError(t, err)
				all = append(all, *run)
				time.Sleep(time.Millisecond) // distinct creation times, whatever the clock's grain
			}
			slices.Reverse(all) // newest first
			want := func(f repository.RunFilter) []uuid.UUID {
				var ids []uuid.UUID
				for _, r := range all {
					if (f.Phase == "" || r.Phase == f.Phase) && (len(f.Statuses) == 0 || slices.Contains(f.Statuses, r.Status)) &&
						(f.CreatedBefore.IsZero() || r.CreatedAt.Before(f.CreatedBefore)) {
						ids = append(ids, r.ID)
					}
				}
				return ids
			}
			list := func(f repository.RunFilter, limit int) []uuid.UUID {
				var ids []uuid.UUID
				page := repository.Page{Limit: limit}
				for range 20 {
					p, err := repo.ListFeatureRuns(ctx, f, page)
					require.NoError(t, err)
					require.LessOrEqual(t, len(p.Runs), limit)
					for _, r := range p.Runs {
						ids = append(ids, r.ID)
					}
					if p.Next == "" {
						return ids
					}
					page.After = p.Next
				}
				t.Fatal("more pages than runs")
				return nil
			}
			for _, f := range []repository.RunFilter{
				{Phase: "plan"},
				{Phase: "review", Statuses: []models.RunStatus{models.RunFailed}},
				{Phase: "review", Statuses: []models.RunStatus{models.RunFailed, models.RunRunning}},
				{Phase: "plan", Statuses: []models.RunStatus{models.RunCompleted, models.RunCompleted}},
				{Phase: "plan", CreatedBefore: all[3].CreatedAt},
				{Phase: "nothing"},
			} {
				for _, limit := range []int{1, 2, 5, 50} {
					assert.Equal(t, want(f), list(f, limit), "%+v, pages of %d", f, limit)
				}
			}

			counts, err := repo.CountFeatureRuns(ctx, repository.RunFilter{}, 0)
			require.NoError(t, err)
			assert.Equal(t, []repository.RunCount{{Status: models.RunRunning, Count: 4}, {Status: models.RunCompleted, Count: 4}, {Status: models.RunFailed, Count: 4}}, counts)
			counts, err = repo.CountFeatureRuns(ctx, repository.RunFilter{Phase: "plan"}, 0)
			require.NoError(t, err)
			assert.Equal(t, []repository.RunCount{{Status: models.RunRunning, Count: 2}, {Status: models.RunCompleted, Count: 2}, {Status: models.RunFailed, Count: 2}}, counts)
			counts, err = repo.CountFeatureRuns(ctx, repository.RunFilter{Statuses: []models.RunStatus{models.RunFailed}, CreatedBefore: all[0].CreatedAt}, 3)
			require.NoError(t, err)
			assert.Equal(t, []repository.RunCount{{Status: models.RunFailed, Count: 3}}, counts, "the newest run is failed, and left out")
			counts, err = repo.CountFeatureRuns(ctx, repository.RunFilter{}, 3)
			require.NoError(t, err)
			assert.Equal(t, []repository.RunCount{{Status: models.RunRunning, Count: 3, More: true}, {Status: models.RunCompleted, Count: 3, More: true}, {Status: models.RunFailed, Count: 3, More: true}}, counts)

			// Usage and pending CTA events of a page.
			a, b, c := all[0].ID, all[1].ID, all[2].ID
			for i, run := range []uuid.UUID{a, a, b} {
				inv, err := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: run, Agent: "coder", Model: "m"})
				require.NoError(t, err)
				require.NoError(t, repo.CompleteAgentInvocation(ctx, inv, repository.InvocationResult{
					InputTokens: 100 * int64(i+1), OutputTokens: 10, CacheReadInputTokens: 5, ReasoningOutputTokens: 2, CostNanoUSD: 1_000_000_007,
				}))
			}
			for i := range 3 {
				require.NoError(t, repo.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: fmt.Sprint("sum-", i), FeatureRunID: a}))
			}
			require.NoError(t, repo.CompleteCTAEvent(ctx, "sum-0", map[string]any{"ok": true}))
			sums, err := repo.SummarizeRuns(ctx, []uuid.UUID{a, b, c, uuid.New()})
			require.NoError(t, err)
			assert.Equal(t, map[uuid.UUID]repository.RunSummary{
				a: {Usage: repository.UsageTotals{Invocations: 2, InputTokens: 300, OutputTokens: 20, CacheReadInputTokens: 10, ReasoningOutputTokens: 4, CostNanoUSD: 2_000_000_014}, PendingCTAEvents: 2},
				b: {Usage: repository.UsageTotals{Invocations: 1, InputTokens: 300, OutputTokens: 10, CacheReadInputTokens: 5, ReasoningOutputTokens: 2, CostNanoUSD: 1_000_000_007}},
			}, sums)
			sums, err = repo.SummarizeRuns(ctx, nil)
			require.NoError(t, err)
			assert.Empty(t, sums)

			// Input refused before the database is touched.
			for name, call := range map[string]func() error{
				"unknown status": func() error {
					_, err := repo.CountFeatureRuns(ctx, repository.RunFilter{Statuses: []models.RunStatus{"paused"}}, 0)
					return err
				},
				"count limit": func() error { _, err := repo.CountFeatureRuns(ctx, repository.RunFilter{}, -1); return err },
				"phase NUL": func() error {
					_, err := repo.ListFeatureRuns(ctx, repository.RunFilter{Phase: "a\x00"}, repository.Page{})
					return err
				},
				"phase cursor": func() error {
					_, err := repo.ListFeatureRuns(ctx, repository.RunFilter{Phase: "plan"}, repository.Page{After: "nope"})
					return err
				},
				"nil run": func() error { _, err := repo.SummarizeRuns(ctx, []uuid.UUID{uuid.Nil}); return err },
				"too many runs": func() error {
					_, err := repo.SummarizeRuns(ctx, make([]uuid.UUID, repository.MaxPageLimit+1))
					return err
				},
			} {
				assert.ErrorIs(t, call(), repository.ErrInvalidInput, name)
			}
		})
	}
}

// TestListCTAEvents pages through CTA events across runs, on every
// database: soonest deadline first, then by ID, those without a deadline
// last, in any status.
func TestListCTAEvents(t *testing.T) {
	t.Parallel()
	for _, d := range dbtest.All() {
		t.Run(d.Name, func(t *testing.T) {
			ctx := t.Context()
			db := d.Open(t)
			require.NoError(t, migrate.Up(ctx, db))
			repo := repository.New(db)
			base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
			var runs []uuid.UUID
			for range 3 {
				id, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan"})
				require.NoError(t, err)
				runs = append(runs, id)
			}
			// Deadlines out of ID order, ties, and none; some answered.
			events := []struct {
				id       string
				deadline time.Duration // 0: none
				status   models.CTAStatus
			}{
				{"e", 3 * time.Hour, models.CTAPending},
				{"a", 2 * time.Hour, models.CTAPending},
				{"c", time.Hour, models.CTAPending},
				{"b", time.Hour, models.CTAPending},
				{"z", 0, models.CTAPending},
				{"y", 0, models.CTAPending},
				{"d", time.Hour, models.CTACompleted},
				{"x", 0, models.CTATimedOut},
				{"f", time.Minute, models.CTATimedOut},
			}
			for i, e := range events {
				in := repository.NewCTAEvent{ID: e.id, FeatureRunID: runs[i%3], Kind: "approval"}
				if e.deadline != 0 {
					in.ExpiresAt = base.Add(e.deadline)
				}
				require.NoError(t, repo.CreateCTAEvent(ctx, in))
				switch e.status {
				case models.CTACompleted:
					require.NoError(t, repo.CompleteCTAEvent(ctx, e.id, map[string]any{"password": "hunter2"}))
				case models.CTATimedOut:
					require.NoError(t, repo.TimeoutCTAEvent(ctx, e.id))
				}
			}
			list := func(f repository.CTAFilter, limit int) []string {
				var ids []string
				page := repository.Page{Limit: limit}
				for range 20 {
					p, err := repo.ListCTAEvents(ctx, f, page)
					require.NoError(t, err)
					require.LessOrEqual(t, len(p.Events), limit)
					for _, e := range p.Events {
						assert.Equal(t, cmp(f.Status, models.CTAPending), e.Status)
						ids = append(ids, e.ID)
					}
					if p.Next == "" {
						return ids
					}
					page.After = p.Next
				}
				t.Fatal("more pages than events")
				return nil
			}
			for _, limit := range []int{1, 2, 3, 4, 5, 6, 50} {
				assert.Equal(t, []string{"b", "c", "a", "e", "y", "z"}, list(repository.CTAFilter{}, limit), "pages of %d", limit)
				assert.Equal(t, []string{"f", "x"}, list(repository.CTAFilter{Status: models.CTATimedOut}, limit), "pages of %d", limit)
			}
			assert.Equal(t, []string{"d"}, list(repository.CTAFilter{Status: models.CTACompleted}, 1))

			p, err := repo.ListCTAEvents(ctx, repository.CTAFilter{}, repository.Page{Limit: 1})
			require.NoError(t, err)
			require.Len(t, p.Events, 1)
			assert.Equal(t, base.Add(time.Hour), *p.Events[0].ExpiresAt)
			assert.Equal(t, time.UTC, p.Events[0].CreatedAt.Location())

			for name, page := range map[string]repository.Page{
				"limit":          {Limit: repository.MaxPageLimit + 1},
				"cursor":         {After: "%%%"},
				"a run's cursor": {After: must(repo.ListFeatureRuns(ctx, repository.RunFilter{}, repository.Page{Limit: 1})).Next},
			} {
				_, err := repo.ListCTAEvents(ctx, repository.CTAFilter{}, page)
				assert.ErrorIs(t, err, repository.ErrInvalidInput, name)
			}
			_, err = repo.ListCTAEvents(ctx, repository.CTAFilter{Status: "lost"}, repository.Page{})
			assert.ErrorIs(t, err, repository.ErrInvalidInput)
		})
	}
}

func cmp[T comparable](v, or T) T {
	var zero T
	if v == zero {
		return or
	}
	return v
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestRunOutline checks, on every database, that RunOutline is
// RunTimeline without the payloads of phases and invocations.
func TestRunOutline(t *testing.T) {
	t.Parallel()
	for _, d := range dbtest.All() {
		t.Run(d.Name, func(t *testing.T) {
			ctx := t.Context()
			db := d.Open(t)
			require.NoError(t, migrate.Up(ctx, db))
			repo := repository.New(db)
			run, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan", Metadata: map[string]any{"k": "v"}})
			require.NoError(t, err)
			phase, err := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{FeatureRunID: run, Phase: "plan"})
			require.NoError(t, err)
			require.NoError(t, repo.PassPhaseResult(ctx, phase, map[string]any{"steps": 3}))
			parent, err := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: run, PhaseResultID: &phase, Agent: "planner", Model: "m", Input: "plan it"})
			require.NoError(t, err)
			child, err := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: run, ParentInvocationID: &parent, Agent: "researcher", Model: "m", Input: "look"})
			require.NoError(t, err)
			require.NoError(t, repo.CompleteAgentInvocation(ctx, child, repository.InvocationResult{Output: "found", Steps: []any{1}, ToolCalls: []any{2}, InputTokens: 7}))
			require.NoError(t, repo.CreateSandboxRecord(ctx, repository.NewSandbox{ID: "sb", FeatureRunID: run, Provider: "e2b", Metadata: map[string]any{"token": "s3cret"}}))
			require.NoError(t, repo.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: "ask", FeatureRunID: run, RequestData: "ok?"}))

			full, err := repo.RunTimeline(ctx, run)
			require.NoError(t, err)
			outline, err := repo.RunOutline(ctx, run)
			require.NoError(t, err)
			// Strip the payloads from the full timeline: what is left is
			// the outline.
			full.Phases[0].Output = nil
			strip := []*repository.InvocationTimeline{&full.Phases[0].Invocations[0], &full.Phases[0].Invocations[0].SubInvocations[0]}
			for _, inv := range strip {
				require.NotNil(t, inv.Input)
				inv.Input, inv.Steps, inv.ToolCalls, inv.Output = nil, nil, nil, nil
			}
			assert.Equal(t, full, outline)
			assert.Equal(t, int64(7), outline.Phases[0].Invocations[0].SubInvocations[0].InputTokens)
			assert.True(t, bytes.Contains(outline.Run.Metadata, []byte("v")), "the run whole")
			assert.True(t, bytes.Contains(outline.Sandboxes[0].Metadata, []byte("s3cret")), "sandboxes whole")

			_, err = repo.RunOutline(ctx, uuid.New())
			assert.ErrorIs(t, err, repository.ErrNotFound)
		})
	}
}
