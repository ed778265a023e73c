package mariadb

import (
	"regexp"
	"strings"

	"github.com/agentpipeline/persistence/internal/dialect"
)

// declared is a column as the migration files declare it: its type as
// the catalog shows it (see columnType), and, for a char or varchar
// column, its collation.
type declared struct{ typ, collation string }

var (
	// columnDefinition finds the name, type and collation of a column
	// definition: a line of a CREATE TABLE, or what follows ADD COLUMN IF
	// NOT EXISTS.
	columnDefinition = regexp.MustCompile("(?im)^\\s*`?(\\w+)`?\\s+([a-z]+(?:\\(\\d+(?:,\\s*\\d+)?\\))?)(?:\\s+CHARACTER SET \\w+)?(?:\\s+COLLATE (\\w+))?")
	tableCollation   = regexp.MustCompile(`(?i)\bCOLLATE\s*=\s*(\w+)`)
	addedColumn      = regexp.MustCompile("(?is)ADD COLUMN IF NOT EXISTS (.*)$")
	keyword          = regexp.MustCompile(`(?i)^(PRIMARY|UNIQUE|INDEX|KEY|CONSTRAINT|FOREIGN|CHECK|FULLTEXT|SPATIAL)$`)
	displayWidth     = regexp.MustCompile(`^(tinyint|smallint|mediumint|int|bigint)\(\d+\)`)
)

// declarations returns the columns that stmts declare, by table and
// column. A column added by an ALTER TABLE takes its table's collation.
func declarations(stmts []statement) map[string]map[string]declared {
	tables := map[string]map[string]declared{}
	collations := map[string]string{}
	for _, s := range stmts {
		if tables[s.table] == nil {
			tables[s.table] = map[string]declared{}
		}
		if s.index != "" {
			continue
		}
		if s.column == "" {
			body, options, _ := cutLast(s.sql, ")")
			if m := tableCollation.FindStringSubmatch(options); m != nil {
				collations[s.table] = m[1]
			}
			_, body, _ = strings.Cut(body, "(")
			for _, line := range strings.Split(body, "\n") {
				if m := columnDefinition.FindStringSubmatch(line); m != nil && !keyword.MatchString(m[1]) {
					tables[s.table][m[1]] = declare(m[2], m[3], collations[s.table])
				}
			}
			continue
		}
		if m := addedColumn.FindStringSubmatch(s.sql); m != nil {
			if d := columnDefinition.FindStringSubmatch(m[1]); d != nil {
				tables[s.table][d[1]] = declare(d[2], d[3], collations[s.table])
			}
		}
	}
	return tables
}

// declare returns the declaration of a column of type typ, in collation
// or else the table's.
func declare(typ, collation, table string) declared {
	d := declared{typ: columnType(typ)}
	if strings.HasPrefix(d.typ, "char(") || strings.HasPrefix(d.typ, "varchar(") {
		d.collation = collation
		if d.collation == "" {
			d.collation = table
		}
	}
	return d
}

// columnType writes a type as information_schema.columns.column_type
// does, but for integer types, whose display width it drops: MariaDB's
// json is a longtext.
func columnType(typ string) string {
	typ = strings.ToLower(strings.ReplaceAll(typ, " ", ""))
	if typ == "json" {
		return "longtext"
	}
	return displayWidth.ReplaceAllString(typ, "$1")
}

// cutLast is strings.Cut at the last sep.
func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// catalogColumn is a column as information_schema.columns shows it.
type catalogColumn struct {
	Table, Name, Type string
	Collation         *string
}

// mismatches returns the columns of catalog that the files declare
// otherwise: of another type, or, for a char or varchar column, in
// another collation. Columns the files do not declare, and declared
// columns that are missing, are not its concern.
func mismatches(want map[string]map[string]declared, catalog []catalogColumn) []dialect.ColumnMismatch {
	var out []dialect.ColumnMismatch
	for _, c := range catalog {
		d, ok := want[c.Table][c.Name]
		if !ok {
			continue
		}
		collation := ""
		if c.Collation != nil {
			collation = *c.Collation
		}
		if columnType(c.Type) == d.typ && (d.collation == "" || collation == d.collation) {
			continue
		}
		got, wanted := c.Type, d.typ
		if collation != "" && (d.collation != "" || strings.Contains(c.Type, "char")) {
			got += " " + collation
		}
		if d.collation != "" {
			wanted += " " + d.collation
		}
		out = append(out, dialect.ColumnMismatch{Table: c.Table, Column: c.Name, Got: got, Want: wanted})
	}
	return out
}

// schemaFix is what a SchemaError says to do.
const schemaFix = "migrate.Up did not make these columns (GORM's AutoMigrate makes IDs and names case-insensitive and UUIDs MariaDB's uuid type), " +
	"and does not rewrite tables: changing a key's type or collation copies the whole table under a lock, and the rows may already hold IDs that the old collation took for one another, which no migration can tell apart. " +
	"Copy the rows into a new database made by migrate.Up, or alter these columns to their definitions in migrate/sql/mariadb/schema.sql (see docs/databases.md, \"MariaDB\"), then run Up again"
