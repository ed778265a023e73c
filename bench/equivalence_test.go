package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/internal/workload"
)

// runTables are the tables a feature run writes to, each with the column
// that names the run, and the columns left out of rowsOfRun: IDs derived
// from the key and the times of the writes, of which only whether each
// was set is kept.
var runTables = []struct {
	name, run  string
	ids, times []string
}{
	{"feature_runs", "id", []string{"id"}, []string{"completed_at"}},
	{"sandboxes", "feature_run_id", []string{"id", "feature_run_id"}, []string{"started_at", "stopped_at"}},
	{"phase_results", "feature_run_id", []string{"id", "feature_run_id"}, []string{"finished_at"}},
	{"agent_invocations", "feature_run_id", []string{"id", "feature_run_id", "phase_result_id", "parent_invocation_id"}, []string{"finished_at"}},
	{"cta_events", "feature_run_id", []string{"id", "feature_run_id"}, []string{"resolved_at"}},
}

// rowsOfRun returns, as JSON text per table, the rows that the feature run
// id wrote, without what differs between two runs of the same seed: IDs
// derived from the key (an invocation's phase is told by whether it has
// one, a sub-agent's parent by the parent's input), and the times of the
// writes. The rows are sorted by their text, not their creation: on MariaDB
// the repository's timestamps are GORM's NowFunc, which gorm.io/driver/mysql
// rounds to the millisecond, so rows created within one tie. It reads any
// database the same way, so it compares two sides on the same database,
// not the databases.
func rowsOfRun(ctx context.Context, db *sql.DB, id uuid.UUID) (map[string]string, error) {
	tables := make(map[string]string, len(runTables))
	for _, table := range runTables {
		// id is a UUID, whose text needs no quoting.
		rows, err := readRows(ctx, db, "SELECT * FROM "+table.name+" WHERE "+table.run+" = '"+id.String()+"'")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", table.name, err)
		}
		inputs := make(map[any]any, len(rows))
		for _, row := range rows {
			inputs[row["id"]] = row["input"]
		}
		for _, row := range rows {
			if table.name == "agent_invocations" {
				row["in_phase"] = row["phase_result_id"] != nil
				row["parent_input"] = inputs[row["parent_invocation_id"]]
			}
			for _, c := range table.times {
				row[c] = row[c] != nil
			}
			for _, c := range append([]string{"created_at", "updated_at"}, table.ids...) {
				delete(row, c)
			}
		}
		texts := make([]string, len(rows))
		for i, row := range rows {
			text, err := json.Marshal(row)
			if err != nil {
				return nil, err
			}
			texts[i] = string(text)
		}
		slices.Sort(texts)
		tables[table.name] = "[" + strings.Join(texts, ",") + "]"
	}
	return tables, nil
}

// readRows returns the rows of query, each a map from column to value,
// with text as strings.
func readRows(ctx context.Context, db *sql.DB, query string) ([]map[string]any, error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	columns, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var read []map[string]any
	for rows.Next() {
		values := make([]any, len(columns))
		dest := make([]any, len(columns))
		for i := range values {
			dest[i] = &values[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		row := make(map[string]any, len(columns))
		for i, c := range columns {
			if b, ok := values[i].([]byte); ok {
				values[i] = string(b)
			}
			row[c] = values[i]
		}
		read = append(read, row)
	}
	return read, rows.Err()
}

// TestBaselineWritesLikeRepository checks that the comparison is fair on
// each database: the baseline, driven by the same workload, passes the
// same step checks, in order and replayed, and leaves the same rows
// behind. The naive side is held to the step checks only, not to the
// rows: it stores what a plain GORM port stores (see naiveStore), and
// TestNaiveOutcomesLikeRepository compares its outcomes call by call.
func TestBaselineWritesLikeRepository(t *testing.T) {
	if testing.Short() {
		t.Skip("creates a database of its own")
	}
	for _, db := range databases {
		t.Run(db.name, func(t *testing.T) {
			e := db.setup(t)
			ctx := t.Context()
			tables := make(map[string]map[string]string)
			for _, impl := range db.impls {
				st, _ := e.store(impl)
				key := "equivalence/" + randomHex(8)
				steps := workload.Generate(42, key)
				for _, mode := range []workload.Mode{workload.InOrder, workload.Replay} {
					for _, step := range steps {
						if err := workload.Exec(ctx, st, step, mode); err != nil {
							t.Fatalf("%s: %v", impl, err)
						}
					}
				}
				if impl != implRepository && impl != db.baseline {
					continue
				}
				var err error
				if tables[impl], err = rowsOfRun(ctx, e.reader(), workload.RunID(key)); err != nil {
					t.Fatalf("%s: read rows: %v", impl, err)
				}
			}
			for _, table := range runTables {
				want, got := tables[implRepository][table.name], tables[db.baseline][table.name]
				switch {
				case want == "[]":
					t.Errorf("%s: the workload wrote no row, so the comparison is void", table.name)
				case got != want:
					t.Errorf("%s differ:\nrepository: %s\n%-11s %s", table.name, want, db.baseline+":", got)
				}
			}
		})
	}
}
