package reliability_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/datatypes"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/canonjson"
	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/workload"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// snapshot is the canonical content of the five tables: for each table, the
// canonical JSON of each row by primary key. Every column is in it, from the
// models' GORM schema, so a column added later is compared too. JSON columns
// are in canonical form, as PostgreSQL's jsonb and SQLite's text render the
// same value differently. Timestamps that the clock sets are reduced to
// whether they are set, which must not depend on how often a step ran;
// the times the caller chooses (callerTimes) are kept.
type snapshot map[string]map[string]string

// callerTimes are the time columns whose values come from the workload, as
// table.column: a sandbox's started_at is the clock's, an invocation's the
// caller's.
var callerTimes = map[string]bool{"cta_events.expires_at": true, "agent_invocations.started_at": true}

// takeSnapshot reads the rows of run, or of every run when run is uuid.Nil.
func takeSnapshot(t testing.TB, ctx context.Context, db *gorm.DB, run uuid.UUID) snapshot {
	t.Helper()
	s := snapshot{}
	for _, model := range migrate.Models() {
		stmt := &gorm.Statement{DB: db}
		if err := stmt.Parse(model); err != nil {
			t.Fatalf("parse %T: %v", model, err)
		}
		table := stmt.Schema.Table
		rows := reflect.New(reflect.SliceOf(reflect.TypeOf(model).Elem()))
		q := db.WithContext(ctx).Model(model)
		switch {
		case run == uuid.Nil:
		case table == "feature_runs":
			q = q.Where("id = ?", run)
		default:
			q = q.Where("feature_run_id = ?", run)
		}
		if err := q.Find(rows.Interface()).Error; err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		s[table] = map[string]string{}
		for i := range rows.Elem().Len() {
			row := rows.Elem().Index(i)
			cols := map[string]any{}
			for _, name := range stmt.Schema.DBNames {
				v, _ := stmt.Schema.FieldsByDBName[name].ValueOf(ctx, row)
				cols[name] = canonicalColumn(t, table+"."+name, v)
			}
			b, err := json.Marshal(cols)
			if err != nil {
				t.Fatalf("encode %s row: %v", table, err)
			}
			s[table][fmt.Sprint(cols["id"])] = string(b)
		}
	}
	return s
}

func canonicalColumn(t testing.TB, name string, v any) any {
	t.Helper()
	switch v := v.(type) {
	case time.Time:
		if callerTimes[name] {
			return v.UTC().Format(time.RFC3339Nano)
		}
		return !v.IsZero()
	case *time.Time:
		if v == nil {
			return nil
		}
		return canonicalColumn(t, name, *v)
	case datatypes.JSON:
		if v == nil {
			return nil
		}
		c, err := canonjson.Canonicalize(v)
		if err != nil {
			t.Fatalf("column %s holds JSON without a canonical form: %v: %s", name, err, v)
		}
		return json.RawMessage(c)
	case *string:
		if v == nil {
			return nil
		}
		return *v
	case *uuid.UUID:
		if v == nil {
			return nil
		}
		return v.String()
	case uuid.UUID:
		return v.String()
	}
	return v
}

// rows counts the rows of the snapshot.
func (s snapshot) rows() int {
	n := 0
	for _, rows := range s {
		n += len(rows)
	}
	return n
}

// diff describes each row that is in one snapshot and not the other, or in
// both and different; it is empty when the snapshots are equal.
func diff(want, got snapshot) []string {
	var out []string
	for _, table := range slices.Sorted(maps.Keys(want)) {
		ids := map[string]bool{}
		for id := range want[table] {
			ids[id] = true
		}
		for id := range got[table] {
			ids[id] = true
		}
		for _, id := range slices.Sorted(maps.Keys(ids)) {
			w, inWant := want[table][id]
			g, inGot := got[table][id]
			switch {
			case !inGot:
				out = append(out, fmt.Sprintf("%s %s: missing, want %s", table, id, w))
			case !inWant:
				out = append(out, fmt.Sprintf("%s %s: unexpected %s", table, id, g))
			case w != g:
				out = append(out, fmt.Sprintf("%s %s:\n\twant %s\n\tgot  %s", table, id, w, g))
			}
		}
	}
	for table := range got {
		if _, ok := want[table]; !ok {
			out = append(out, "unexpected table "+table)
		}
	}
	return out
}

// requireSame fails t, listing the differences, unless got equals want.
func requireSame(t testing.TB, want, got snapshot, what string) {
	t.Helper()
	if d := diff(want, got); len(d) > 0 {
		if len(d) > 10 {
			d = append(d[:10], fmt.Sprintf("… and %d more", len(d)-10))
		}
		t.Fatalf("%s: %d rows differ from the clean run:\n%s", what, len(d), strings.Join(d, "\n"))
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
