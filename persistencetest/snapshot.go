package persistencetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/datatypes"
	"gorm.io/gorm"
	"gorm.io/gorm/schema"

	"github.com/agentpipeline/persistence/internal/canonjson"
	"github.com/agentpipeline/persistence/migrate"
)

// Snapshot is the content of the five tables of package models, every
// column of every row, in a canonical text form that two databases can be
// compared by. Read one with [ReadSnapshot] or [TakeSnapshot], compare two
// with [Diff]. The zero Snapshot is a database without rows.
//
// The columns come from the models' GORM schema, so a column added to a
// model is compared too. Unless [Exact] is given:
//
//   - JSON columns are in canonical form (sorted keys, no whitespace, exact
//     shortest numbers), as PostgreSQL's jsonb and SQLite's text store the
//     same value differently;
//   - times are only "set" or NULL, as the database's clock sets them and
//     two runs never share a clock, except the columns named by
//     [CompareTimes];
//   - IDs the package generated itself, for a create given the zero UUID,
//     are shown as "<generated #n>", numbered in the order they were
//     generated, wherever they appear (as a key or a reference), since no
//     two runs generate the same ones. They are recognised as UUIDv7, the
//     version the package generates; a deterministic ID
//     ([repository.StableID], a UUIDv5) never is one. A step that draws a
//     UUIDv7 itself is still caught when it runs again: its second row has
//     a key of its own.
type Snapshot struct {
	// order lists the tables, parents first.
	order  []string
	tables map[string]table
}

// table is the rows of one table, each a canonical value per column.
type table struct {
	columns []string
	// key is the index of the primary key in columns.
	key  int
	rows map[string][]string
}

const null = "NULL"

// ReadSnapshot reads every row of the five tables from db, as [Snapshot]
// describes. Options: [CompareTimes], [OfRun], [Exact], [InSchema].
func ReadSnapshot(ctx context.Context, db *gorm.DB, opts ...Option) (Snapshot, error) {
	r := reader{cfg: newConfig(opts), labels: map[uuid.UUID]string{}}
	// A new session drops the caller's scopes, as the Repository does.
	db = db.Session(&gorm.Session{NewDB: true, Context: ctx})
	type read struct {
		schema *schema.Schema
		rows   reflect.Value
	}
	var reads []read
	for _, model := range migrate.Models() {
		stmt := &gorm.Statement{DB: db}
		if err := stmt.Parse(model); err != nil {
			return Snapshot{}, fmt.Errorf("persistencetest: parse %T: %w", model, err)
		}
		rows := reflect.New(reflect.SliceOf(reflect.TypeOf(model).Elem()))
		q := db.Model(model)
		if r.cfg.schema != "" {
			q = q.Table(r.cfg.schema + "." + stmt.Schema.Table)
		}
		switch {
		case r.cfg.run == uuid.Nil:
		case stmt.Schema.LookUpField("feature_run_id") != nil:
			q = q.Where("feature_run_id = ?", r.cfg.run)
		default:
			q = q.Where(stmt.Schema.PrioritizedPrimaryField.DBName+" = ?", r.cfg.run)
		}
		if err := q.Find(rows.Interface()).Error; err != nil {
			return Snapshot{}, fmt.Errorf("persistencetest: read %s: %w", stmt.Schema.Table, err)
		}
		reads = append(reads, read{stmt.Schema, rows.Elem()})
	}
	if !r.cfg.exact {
		// Number the generated IDs in the order they were generated,
		// which a UUIDv7's leading timestamp and counter give.
		var generated []uuid.UUID
		for _, rd := range reads {
			for i := range rd.rows.Len() {
				for _, f := range rd.schema.Fields {
					if f.DBName == "" {
						continue
					}
					v, _ := f.ValueOf(ctx, rd.rows.Index(i))
					if id, ok := uuidOf(v); ok && id.Version() == 7 {
						generated = append(generated, id)
					}
				}
			}
		}
		slices.SortFunc(generated, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
		for _, id := range slices.Compact(generated) {
			r.labels[id] = fmt.Sprintf("<generated #%d>", len(r.labels)+1)
		}
	}
	s := Snapshot{tables: map[string]table{}}
	for _, rd := range reads {
		t := table{
			columns: rd.schema.DBNames,
			key:     slices.Index(rd.schema.DBNames, rd.schema.PrioritizedPrimaryField.DBName),
			rows:    map[string][]string{},
		}
		for i := range rd.rows.Len() {
			values := make([]string, len(t.columns))
			for c, name := range t.columns {
				v, _ := rd.schema.FieldsByDBName[name].ValueOf(ctx, rd.rows.Index(i))
				text, err := r.value(rd.schema.Table+"."+name, v)
				if err != nil {
					return Snapshot{}, fmt.Errorf("persistencetest: %s.%s: %w", rd.schema.Table, name, err)
				}
				values[c] = text
			}
			t.rows[values[t.key]] = values
		}
		s.order = append(s.order, rd.schema.Table)
		s.tables[rd.schema.Table] = t
	}
	return s, nil
}

// TakeSnapshot is [ReadSnapshot] for a test: it reads with tb's context and
// fails tb if the read fails.
func TakeSnapshot(tb testing.TB, db *gorm.DB, opts ...Option) Snapshot {
	tb.Helper()
	s, err := ReadSnapshot(tb.Context(), db, opts...)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return s
}

// Rows returns the number of rows in s.
func (s Snapshot) Rows() int {
	n := 0
	for _, t := range s.tables {
		n += len(t.rows)
	}
	return n
}

// String returns s as text, a line per row, tables parents first and rows
// by key: equal snapshots give equal text.
func (s Snapshot) String() string {
	var b strings.Builder
	for _, name := range s.order {
		t := s.tables[name]
		for _, k := range slices.Sorted(maps.Keys(t.rows)) {
			b.WriteString(name)
			for c, col := range t.columns {
				fmt.Fprintf(&b, " %s=%s", col, t.rows[k][c])
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// reader turns the values of a row into canonical text.
type reader struct {
	cfg config
	// labels names the generated IDs.
	labels map[uuid.UUID]string
}

// value is the text of v, the value of column, named as "table.column".
func (r *reader) value(column string, v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return null, nil
	case time.Time:
		switch {
		case r.cfg.exact || r.cfg.times[column] || r.cfg.times[column[strings.IndexByte(column, '.')+1:]]:
			return v.UTC().Format(time.RFC3339Nano), nil
		case v.IsZero():
			return "zero", nil
		}
		return "set", nil
	case datatypes.JSON:
		if v == nil {
			return null, nil
		}
		if r.cfg.exact {
			return string(v), nil
		}
		c, err := canonjson.Canonicalize(v)
		if err != nil {
			return "", fmt.Errorf("JSON without a canonical form: %w: %s", err, v)
		}
		return string(c), nil
	case uuid.UUID:
		if label, ok := r.labels[v]; ok {
			return label, nil
		}
		return v.String(), nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			return null, nil
		}
		return r.value(column, rv.Elem().Interface())
	case reflect.String:
		return strconv.Quote(rv.String()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(rv.Uint(), 10), nil
	case reflect.Bool:
		return strconv.FormatBool(rv.Bool()), nil
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(rv.Float(), 'g', -1, 64), nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// uuidOf returns the UUID v holds, if it holds one.
func uuidOf(v any) (uuid.UUID, bool) {
	switch v := v.(type) {
	case uuid.UUID:
		return v, true
	case *uuid.UUID:
		if v != nil {
			return *v, true
		}
	}
	return uuid.Nil, false
}
