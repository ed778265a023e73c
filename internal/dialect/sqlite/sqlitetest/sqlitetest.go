// Package sqlitetest opens SQLite databases for tests. It is the one
// package of the module that links mattn/go-sqlite3, a cgo driver, for
// tests: package sqlite, which programs link, names no driver.
package sqlitetest

import (
	"database/sql"
	"fmt"
	"regexp"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3" // the driver of gorm.io/driver/sqlite
	gormsqlite "gorm.io/driver/sqlite"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dialect/dialecttest"
	"github.com/agentpipeline/persistence/internal/dialect/sqlite"
)

// Test is how tests get an SQLite database: an in-memory one, with no
// server to reach.
var Test = dialecttest.Test{
	Dialect:   &sqlite.Dialect,
	Fresh:     Fresh,
	Dialector: dialector,
	Catalog:   catalog,
}

// Fresh opens a private in-memory database with foreign keys on; dsn is
// unused. The pool has one connection, as every connection to ":memory:"
// is a database of its own: concurrent callers queue for it, and it is
// never closed for being idle or old, which would lose the database.
func Fresh(tb testing.TB, _ string) *sql.DB {
	tb.Helper()
	sqlDB, err := sql.Open("sqlite3", "file::memory:?_foreign_keys=on")
	if err != nil {
		tb.Fatalf("open sqlite: %v", err)
	}
	sqlDB.SetMaxOpenConns(1)
	sqlDB.SetConnMaxLifetime(0)
	sqlDB.SetConnMaxIdleTime(0)
	tb.Cleanup(func() { _ = sqlDB.Close() })
	return sqlDB
}

func dialector(conn gorm.ConnPool) gorm.Dialector {
	return gormsqlite.Dialector{DriverName: "sqlite3", Conn: conn}
}

var spaces = regexp.MustCompile(`\s+`)

func catalog(t testing.TB, db *gorm.DB) []string {
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
