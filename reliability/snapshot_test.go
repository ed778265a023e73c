package reliability_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/workload"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/persistencetest"
	"github.com/agentpipeline/persistence/repository"
)

// snapshot is the content of the five tables as persistencetest compares
// them: every column, JSON in canonical form and the times the clock sets
// only as set or unset. The times the workload chooses, a CTA event's
// expires_at and an invocation's started_at (a sandbox's is the clock's),
// are compared by value.
type snapshot struct{ persistencetest.Snapshot }

// takeSnapshot reads the rows of run, or of every run when run is uuid.Nil.
func takeSnapshot(t testing.TB, ctx context.Context, db *gorm.DB, run uuid.UUID) snapshot {
	t.Helper()
	opts := []persistencetest.Option{persistencetest.CompareTimes("cta_events.expires_at", "agent_invocations.started_at")}
	if run != uuid.Nil {
		opts = append(opts, persistencetest.OfRun(run))
	}
	s, err := persistencetest.ReadSnapshot(ctx, db, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return snapshot{s}
}

// rows counts the rows of the snapshot.
func (s snapshot) rows() int { return s.Rows() }

// diff describes each row that is in one snapshot and not the other, or in
// both and different; it is empty when the snapshots are equal.
func diff(want, got snapshot) []string {
	d := persistencetest.Diff(want.Snapshot, got.Snapshot)
	out := make([]string, len(d))
	for i := range d {
		out[i] = d[i : i+1].String()
	}
	return out
}

// requireSame fails t, showing the first differences, unless got equals
// want.
func requireSame(t testing.TB, want, got snapshot, what string) {
	t.Helper()
	if d := persistencetest.Diff(want.Snapshot, got.Snapshot); len(d) > 0 {
		t.Fatalf("%s: %d rows differ from the clean run:\n%s", what, len(d), d.Describe("clean run", "this run", 10))
	}
}

// emptyTables deletes every row, children first, so that a database can
// serve the next run of a workload as if it were fresh.
func emptyTables(t testing.TB, ctx context.Context, db *gorm.DB) {
	t.Helper()
	for _, table := range []string{"agent_invocations", "phase_results", "sandboxes", "cta_events", "feature_runs"} {
		if err := db.WithContext(ctx).Exec("DELETE FROM " + table).Error; err != nil {
			t.Fatalf("empty %s: %v", table, err)
		}
	}
}

// runSteps executes steps in order, each once, in mode, and fails t on the
// first error Check does not accept.
func runSteps(t testing.TB, ctx context.Context, repo *repository.Repository, steps []workload.Step, mode workload.Mode) {
	t.Helper()
	for _, s := range steps {
		if err := workload.Exec(ctx, repo, s, mode); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSnapshotSeesEveryChange changes a clean run's rows the ways a broken
// write could, one at a time, and checks that the snapshot tells each from
// the clean one, and only by the row changed, while a clock timestamp
// moving, which replays legitimately do, is no difference.
func TestSnapshotSeesEveryChange(t *testing.T) {
	key := "snapshot"
	steps := workload.Generate(5, key)
	run := workload.RunID(key)
	invocation := repository.StableID(key, "invocation", "plan", "1", "0")
	subAgent := repository.StableID(key, "invocation", "plan", "1", "1")
	cases := []struct {
		name  string
		diffs int
		edit  func(ctx context.Context, db *gorm.DB, repo *repository.Repository) error
	}{
		{"cost changed", 1, func(ctx context.Context, db *gorm.DB, _ *repository.Repository) error {
			return db.WithContext(ctx).Exec(`UPDATE agent_invocations SET cost_nano_usd = cost_nano_usd + 1 WHERE id = ?`, invocation).Error
		}},
		{"memory lost", 1, func(ctx context.Context, db *gorm.DB, _ *repository.Repository) error {
			var memories []json.RawMessage
			var row struct{ Memories string }
			if err := db.WithContext(ctx).Raw(`SELECT memories FROM feature_runs WHERE id = ?`, run).Scan(&row).Error; err != nil {
				return err
			}
			if err := json.Unmarshal([]byte(row.Memories), &memories); err != nil {
				return err
			}
			kept, _ := json.Marshal(memories[:len(memories)-1])
			return db.WithContext(ctx).Exec(`UPDATE feature_runs SET memories = ? WHERE id = ?`, string(kept), run).Error
		}},
		{"status regressed", 1, func(ctx context.Context, db *gorm.DB, _ *repository.Repository) error {
			return db.WithContext(ctx).Exec(`UPDATE sandboxes SET status = 'running' WHERE status = 'stopped'`).Error
		}},
		{"sub-agent detached", 1, func(ctx context.Context, db *gorm.DB, _ *repository.Repository) error {
			return db.WithContext(ctx).Exec(`UPDATE agent_invocations SET parent_invocation_id = NULL WHERE id = ?`, subAgent).Error
		}},
		{"start moved", 1, func(ctx context.Context, db *gorm.DB, _ *repository.Repository) error {
			return db.WithContext(ctx).Exec(`UPDATE agent_invocations SET started_at = ? WHERE id = ?`, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), invocation).Error
		}},
		{"cache tokens changed", 1, func(ctx context.Context, db *gorm.DB, _ *repository.Repository) error {
			return db.WithContext(ctx).Exec(`UPDATE agent_invocations SET cache_read_input_tokens = cache_read_input_tokens + 1 WHERE id = ?`, invocation).Error
		}},
		{"time to first token unset", 1, func(ctx context.Context, db *gorm.DB, _ *repository.Repository) error {
			return db.WithContext(ctx).Exec(`UPDATE agent_invocations SET time_to_first_token_micros = NULL WHERE time_to_first_token_micros IS NOT NULL AND id = (SELECT min(id) FROM agent_invocations WHERE time_to_first_token_micros IS NOT NULL)`).Error
		}},
		{"timestamp unset", 1, func(ctx context.Context, db *gorm.DB, _ *repository.Repository) error {
			return db.WithContext(ctx).Exec(`UPDATE agent_invocations SET finished_at = NULL WHERE id = ?`, invocation).Error
		}},
		{"deadline moved", 3, func(ctx context.Context, db *gorm.DB, _ *repository.Repository) error {
			return db.WithContext(ctx).Model(&models.CTAEvent{}).Where("1 = 1").Update("expires_at", time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)).Error
		}},
		{"row duplicated under another ID", 1, func(ctx context.Context, _ *gorm.DB, repo *repository.Repository) error {
			_, err := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: uuid.New(), FeatureRunID: run, Phase: "plan"})
			return err
		}},
		{"clock timestamps moved", 0, func(ctx context.Context, db *gorm.DB, _ *repository.Repository) error {
			return db.WithContext(ctx).Exec(`UPDATE feature_runs SET updated_at = ?, completed_at = ?`, time.Now(), time.Now()).Error
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, db, repo := freshRepo(t, dbtest.SQLite)
			runSteps(t, ctx, repo, steps, workload.InOrder)
			clean := takeSnapshot(t, ctx, db, uuid.Nil)
			if err := c.edit(ctx, db, repo); err != nil {
				t.Fatal(err)
			}
			if d := diff(clean, takeSnapshot(t, ctx, db, uuid.Nil)); len(d) != c.diffs {
				t.Errorf("%d differences, want %d: %q", len(d), c.diffs, d)
			}
		})
	}
}
