package dialect

import (
	"errors"
	"fmt"
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
