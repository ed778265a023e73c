package dbtest

import (
	"database/sql"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"
)

// Catalog describes the schema of db (tables, columns with their types,
// nullability and defaults in order, indexes, constraints including
// foreign keys, and triggers) as sorted lines, one per object, for
// comparing two schemas. Names are unqualified, so that schemas in two
// PostgreSQL schemas compare equal.
func Catalog(t testing.TB, db *gorm.DB) []string {
	t.Helper()
	var lines []string
	switch name := db.Dialector.Name(); name {
	case "postgres":
		lines = postgresCatalog(t, db)
	case "sqlite":
		lines = sqliteCatalog(t, db)
	default:
		t.Fatalf("no catalog for %s", name)
	}
	slices.Sort(lines)
	return lines
}

func postgresCatalog(t testing.TB, db *gorm.DB) []string {
	t.Helper()
	var schema string
	if err := db.Raw("SELECT current_schema()").Scan(&schema).Error; err != nil {
		t.Fatal(err)
	}
	unqualify := func(s string) string { return strings.ReplaceAll(s, schema+".", "") }
	var lines []string
	for _, q := range []string{
		`SELECT 'table ' || table_name || ' ' || table_type FROM information_schema.tables WHERE table_schema = current_schema()`,
		`SELECT format('column %s.%s #%s %s(%s) nullable=%s default=%s', table_name, column_name, ordinal_position, data_type,
			coalesce(character_maximum_length::text, ''), is_nullable, coalesce(column_default, 'none'))
		FROM information_schema.columns WHERE table_schema = current_schema()`,
		`SELECT 'index ' || tablename || ' ' || indexdef FROM pg_indexes WHERE schemaname = current_schema()`,
		`SELECT format('constraint %s %s %s', c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid))
		FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = current_schema()`,
		`SELECT format('trigger %s %s', tgrelid::regclass, pg_get_triggerdef(t.oid))
		FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = current_schema() AND NOT t.tgisinternal`,
	} {
		var rows []string
		if err := db.Raw(q).Scan(&rows).Error; err != nil {
			t.Fatalf("read the catalog: %v", err)
		}
		for _, r := range rows {
			lines = append(lines, unqualify(r))
		}
	}
	return lines
}

var spaces = regexp.MustCompile(`\s+`)

func sqliteCatalog(t testing.TB, db *gorm.DB) []string {
	t.Helper()
	var objects []struct {
		Type, Name, TblName string
		SQL                 sql.NullString
	}
	if err := db.Raw(`SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'`).Scan(&objects).Error; err != nil {
		t.Fatalf("read the catalog: %v", err)
	}
	var lines []string
	for _, o := range objects {
		switch o.Type {
		case "table":
			lines = append(lines, "table "+o.Name)
			var cols []struct {
				Cid       int
				Name      string
				Type      string
				NotNull   int
				DfltValue sql.NullString
				Pk        int
			}
			if err := db.Raw("SELECT cid, name, type, \"notnull\" AS not_null, dflt_value, pk FROM pragma_table_info(?)", o.Name).Scan(&cols).Error; err != nil {
				t.Fatal(err)
			}
			for _, c := range cols {
				lines = append(lines, fmt.Sprintf("column %s.%s #%d %s notnull=%d default=%v pk=%d", o.Name, c.Name, c.Cid, c.Type, c.NotNull, c.DfltValue, c.Pk))
			}
			var fks []struct {
				ID, Seq                   int
				Table, From, To           string
				OnUpdate, OnDelete, Match string
			}
			if err := db.Raw(`SELECT id, seq, "table", "from", "to", on_update, on_delete, "match" FROM pragma_foreign_key_list(?)`, o.Name).Scan(&fks).Error; err != nil {
				t.Fatal(err)
			}
			// Foreign keys are numbered in an order that depends on how
			// the table was written; describe each by its columns.
			byID := map[int][]string{}
			for _, fk := range fks {
				byID[fk.ID] = append(byID[fk.ID], fmt.Sprintf("%s->%s.%s on update %s on delete %s", fk.From, fk.Table, fk.To, fk.OnUpdate, fk.OnDelete))
			}
			for _, cols := range byID {
				lines = append(lines, "foreign key "+o.Name+" "+strings.Join(cols, ", "))
			}
		case "index", "trigger":
			// An index's text is GORM's, whatever made the schema; a
			// trigger's is package migrate's.
			lines = append(lines, fmt.Sprintf("%s %s %s %s", o.Type, o.TblName, o.Name, spaces.ReplaceAllString(strings.TrimSpace(o.SQL.String), " ")))
		default:
			lines = append(lines, o.Type+" "+o.Name)
		}
	}
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
