package persistencetest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/persistencetest"
	"github.com/agentpipeline/persistence/repository"
)

// fill writes a row in each table, the run, phase result and invocation
// under IDs the package generates, and returns the run's ID.
func fill(t *testing.T, db *gorm.DB, expires time.Time) uuid.UUID {
	t.Helper()
	ctx, repo := t.Context(), repository.New(db)
	run, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan", Memories: []any{map[string]any{"b": 1, "a": 2}}})
	if err != nil {
		t.Fatal(err)
	}
	phase, err := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{FeatureRunID: run, Phase: "plan"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: run, PhaseResultID: &phase, Agent: "planner"}); err != nil {
		t.Fatal(err)
	}
	if err := repo.CreateSandboxRecord(ctx, repository.NewSandbox{ID: "sbx-1", FeatureRunID: run, Provider: "e2b"}); err != nil {
		t.Fatal(err)
	}
	if err := repo.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: "cta-1", FeatureRunID: run, Kind: "approval", ExpiresAt: expires}); err != nil {
		t.Fatal(err)
	}
	return run
}

func TestSnapshotHasEveryColumn(t *testing.T) {
	t.Parallel()
	db := persistencetest.Open(t)
	fill(t, db, time.Now())
	s := persistencetest.TakeSnapshot(t, db)
	if s.Rows() != 5 {
		t.Fatalf("%d rows, want 5", s.Rows())
	}
	lines := strings.Split(strings.TrimSuffix(s.String(), "\n"), "\n")
	for i, model := range migrate.Models() {
		stmt := &gorm.Statement{DB: db}
		if err := stmt.Parse(model); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(lines[i], stmt.Schema.Table+" ") {
			t.Errorf("line %d is %q, want the row of %s", i, lines[i], stmt.Schema.Table)
		}
		for _, col := range stmt.Schema.DBNames {
			if !strings.Contains(lines[i], " "+col+"=") {
				t.Errorf("%s lacks column %s: %s", stmt.Schema.Table, col, lines[i])
			}
		}
	}
}

// TestGeneratedIDsCompareByOrder fills two databases alike, under IDs the
// package generates, which differ: the snapshots are equal all the same,
// references included, unless Exact.
func TestGeneratedIDsCompareByOrder(t *testing.T) {
	t.Parallel()
	a, b := persistencetest.Open(t), persistencetest.Open(t)
	expires := time.Now()
	runA, runB := fill(t, a, expires), fill(t, b, expires)
	if runA == runB {
		t.Fatal("the package generated the same ID twice")
	}
	sa, sb := persistencetest.TakeSnapshot(t, a), persistencetest.TakeSnapshot(t, b)
	if d := persistencetest.Diff(sa, sb); len(d) != 0 {
		t.Errorf("the snapshots differ:\n%s", d)
	}
	for _, want := range []string{
		"feature_runs id=<generated #1> ",
		"phase_results id=<generated #2> feature_run_id=<generated #1> ",
		"phase_result_id=<generated #2> ",
	} {
		if !strings.Contains(sa.String(), want) {
			t.Errorf("the snapshot lacks %q:\n%s", want, sa)
		}
	}
	if d := persistencetest.Diff(persistencetest.TakeSnapshot(t, a, persistencetest.Exact()), persistencetest.TakeSnapshot(t, b, persistencetest.Exact())); len(d) != 3*2+2 {
		// Three rows under generated keys, on each side, and two under
		// the same key, with other times.
		t.Errorf("exact snapshots: %d differences, want every row, 8:\n%s", len(d), d)
	}
}

// TestTimesCompareAsSet: a deadline that differs is no difference, unless
// CompareTimes names it; one that is set in a database only is.
func TestTimesCompareAsSet(t *testing.T) {
	t.Parallel()
	a, b, c := persistencetest.Open(t), persistencetest.Open(t), persistencetest.Open(t)
	deadline := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	fill(t, a, deadline)
	fill(t, b, deadline.Add(time.Minute))
	fill(t, c, time.Time{})
	sa, sb, sc := persistencetest.TakeSnapshot(t, a), persistencetest.TakeSnapshot(t, b), persistencetest.TakeSnapshot(t, c)
	if d := persistencetest.Diff(sa, sb); len(d) != 0 {
		t.Errorf("other deadlines differ:\n%s", d)
	}
	d := persistencetest.Diff(sa, sc)
	if len(d) != 1 || !strings.Contains(d.String(), "expires_at   set    NULL") {
		t.Errorf("a deadline and none: got %d differences, want 1 on expires_at:\n%s", len(d), d)
	}
	named := persistencetest.CompareTimes("expires_at")
	d = persistencetest.Diff(persistencetest.TakeSnapshot(t, a, named), persistencetest.TakeSnapshot(t, b, named))
	if len(d) != 1 || !strings.Contains(d.String(), `expires_at   2030-01-01T00:00:00Z   2030-01-01T00:01:00Z`) {
		t.Errorf("named deadlines: got %d differences, want 1 on expires_at:\n%s", len(d), d)
	}
}

func TestOfRun(t *testing.T) {
	t.Parallel()
	db := persistencetest.Open(t)
	run := fill(t, db, time.Now())
	repo := repository.New(db)
	other, err := repo.CreateFeatureRun(t.Context(), repository.NewFeatureRun{Phase: "plan"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.CreatePhaseResult(t.Context(), repository.NewPhaseResult{FeatureRunID: other, Phase: "plan"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		run  uuid.UUID
		rows int
	}{{run, 5}, {other, 2}, {uuid.New(), 0}} {
		if n := persistencetest.TakeSnapshot(t, db, persistencetest.OfRun(c.run)).Rows(); n != c.rows {
			t.Errorf("run %s: %d rows, want %d", c.run, n, c.rows)
		}
	}
	if n := persistencetest.TakeSnapshot(t, db).Rows(); n != 7 {
		t.Errorf("every run: %d rows, want 7", n)
	}
}

// TestDescribe checks how differences read: long values clipped around
// their first difference, a row on one side beside the most alike on the
// other, and a count of those left out.
func TestDescribe(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 100)
	cols := []string{"id", "phase", "memories"}
	d := persistencetest.Differences{
		{Table: "feature_runs", Key: "1", Columns: cols, Want: []string{"1", `"plan"`, `["` + long + `x"]`}, Got: []string{"1", `"plan"`, `["` + long + `y"]`}},
		{Table: "feature_runs", Key: "2", Columns: cols, Want: []string{"2", `"plan"`, `[]`}},
		{Table: "feature_runs", Key: "3", Columns: cols, Got: []string{"3", `"review"`, `[]`}},
		{Table: "feature_runs", Key: "4", Columns: cols, Got: []string{"4", `"plan"`, `[]`}},
		{Table: "feature_runs", Key: "5", Columns: cols, Got: []string{"5", `"plan"`, `[1]`}},
	}
	got := d.Describe("before", "after", 2)
	// 64 characters, the last the difference.
	tail := strings.Repeat("a", 61)
	want := `feature_runs 1: differs
    column     before                                                              after
    memories   …` + tail + `x"]   …` + tail + `y"]
feature_runs 2: only in before, beside 4: only in after
    column   before   after
    id       2        4
    every other column is equal: the same row under another key, as when an ID comes from uuid.New() or the clock rather than repository.StableID
… and 2 more differing rows
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if s := d[2:3].String(); !strings.Contains(s, "feature_runs 3: only in got\n") || !strings.Contains(s, `phase      (no row)   "review"`) {
		t.Errorf("a row in got only:\n%s", s)
	}
}
