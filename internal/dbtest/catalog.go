package dbtest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dialects"
)

// Catalog describes the schema of db (tables, columns with their types,
// nullability and defaults in order, indexes, constraints including
// foreign keys, and triggers) as sorted lines, one per object, for
// comparing two schemas. Names are unqualified, so that schemas in two
// PostgreSQL schemas compare equal.
func Catalog(t testing.TB, db *gorm.DB) []string {
	t.Helper()
	d, err := dialects.Of(db)
	if err != nil {
		t.Fatal(err)
	}
	lines := TestOf(d).Catalog(t, db)
	slices.Sort(lines)
	return lines
}

// Rows returns every row of table, ordered by its id column, as a map of
// each column to its value: text for bytes, UTC RFC 3339 for times.
func Rows(t testing.TB, db *gorm.DB, table string) []map[string]any {
	t.Helper()
	q := "SELECT * FROM " + table + " ORDER BY id"
	rows, err := db.Raw(q).Rows()
	if err != nil && strings.Contains(err.Error(), "cached plan must not change result type") {
		// pgx prepared the statement on this connection before a column
		// was added; PostgreSQL refuses the old plan once, and pgx then
		// forgets it, as it would for any application's statement.
		rows, err = db.Raw(q).Rows()
	}
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for rows.Next() {
		values := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range values {
			ptrs[i] = &values[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := make(map[string]any, len(cols))
		for i, c := range cols {
			switch v := values[i].(type) {
			case []byte:
				row[c] = string(v)
			case time.Time:
				row[c] = v.UTC().Format(time.RFC3339Nano)
			default:
				row[c] = v
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
