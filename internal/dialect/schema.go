package dialect

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrSchemaMismatch is matched by every *SchemaError.
var ErrSchemaMismatch = errors.New("schema does not match")

// SchemaError is the error of a schema whose tables exist but whose
// columns differ from those the package makes, in a way that breaks a
// promise, such as an ID compared without regard to case. It matches
// ErrSchemaMismatch.
type SchemaError struct {
	// Columns lists the columns that differ.
	Columns []ColumnMismatch
	// Fix says what to do.
	Fix string
}

// ColumnMismatch is one column of a SchemaError.
type ColumnMismatch struct {
	// Table and Column name the column.
	Table, Column string
	// Got is its type and, for text, its collation, as the catalog shows
	// them, such as "varchar(255) utf8mb4_general_ci"; Want is what the
	// package makes.
	Got, Want string
}

// shownColumns is how many columns a SchemaError's message lists.
const shownColumns = 5

func (e *SchemaError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d column(s) differ from the package's schema:", ErrSchemaMismatch, len(e.Columns))
	for i, c := range e.Columns {
		if i == shownColumns {
			fmt.Fprintf(&b, " and %d more;", len(e.Columns)-i)
			break
		}
		fmt.Fprintf(&b, " %s.%s is %s, want %s;", c.Table, c.Column, c.Got, c.Want)
	}
	b.WriteString(" ")
	b.WriteString(e.Fix)
	return b.String()
}

// Is reports whether target is ErrSchemaMismatch.
func (e *SchemaError) Is(target error) bool { return target == ErrSchemaMismatch }

// ErrInvalidInput is matched by the errors of arguments the package
// rejects before it touches the database; repository and migrate export
// it as their own.
var ErrInvalidInput = errors.New("invalid input")

// plainIdentifier is a schema name the package takes: lower-case letters,
// digits and underscores, not starting with a digit. Upper case is left
// out because PostgreSQL folds an unquoted name to lower case and MariaDB
// does not, so "Acme" would name two schemas to a person at a SQL prompt.
var plainIdentifier = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// maxSchemaName is the longest schema name: PostgreSQL's (NAMEDATALEN-1
// bytes), one less than MariaDB's.
const maxSchemaName = 63

// CheckSchema returns why d cannot hold a tenant's tables in the schema
// name, or "" when it can.
func (d *Dialect) CheckSchema(name string) string {
	switch {
	case d.Schemas == nil:
		return d.Name + " has no schemas to put tables in: use a database of its own per tenant"
	case len(name) > maxSchemaName:
		return fmt.Sprintf("%.20q… is %d bytes long, more than %d", name, len(name), maxSchemaName)
	case !plainIdentifier.MatchString(name):
		return fmt.Sprintf("%q is not a plain identifier: use lower-case letters, digits and underscores, not starting with a digit", name)
	case d.Schemas.Reserved(name):
		return fmt.Sprintf("%q is reserved by %s", name, d.Name)
	}
	return ""
}

// Schemas is how a database keeps tenants' tables apart, each tenant's in
// a schema of its own (a database, on MariaDB).
type Schemas struct {
	// Reserved reports whether name is one the database keeps for
	// itself, such as PostgreSQL's pg_catalog or MariaDB's mysql.
	Reserved func(name string) bool
	// Drop is the statement, a format of the schema's quoted name, that
	// drops a schema with its tables if it exists: for tests.
	Drop string
}

// tableRef finds the package's tables where a statement reads or writes
// them: the table name, bare or quoted, right after FROM, JOIN (MariaDB's
// STRAIGHT_JOIN too), UPDATE or INTO. Every statement of the package names
// its tables there, and only there, without a schema. Go's regexp has no
// look-around, so Qualify checks the characters on either side itself.
var tableRef = regexp.MustCompile("(?i)(?:FROM|JOIN|UPDATE|INTO)\\s+([`\"]?)(?:feature_runs|sandboxes|phase_results|agent_invocations|cta_events)[`\"]?")

// Qualify returns query with each of the package's tables it names
// qualified by schema, quoted as the database quotes identifiers.
func Qualify(query, quotedSchema string) string {
	var b strings.Builder
	last := 0
	for _, m := range tableRef.FindAllStringSubmatchIndex(query, -1) {
		if m[0] > 0 && isNamePart(query[m[0]-1], false) || m[1] < len(query) && isNamePart(query[m[1]], true) {
			continue
		}
		b.WriteString(query[last:m[2]])
		b.WriteString(quotedSchema)
		b.WriteByte('.')
		last = m[2]
	}
	if last == 0 {
		return query
	}
	b.WriteString(query[last:])
	return b.String()
}

// isNamePart reports whether c may continue a name, as a letter or digit
// before a keyword or a letter, digit, underscore or dot after a table
// name (MariaDB's STRAIGHT_JOIN ends in JOIN, after an underscore).
func isNamePart(c byte, after bool) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return after && (c == '_' || c == '.')
}
