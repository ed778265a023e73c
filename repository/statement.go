package repository

import (
	"strconv"
	"strings"
)

// statement is an SQL statement written with ? placeholders and rendered
// once, when the package loads, in the placeholder style of each dialect,
// so that a write costs no statement building.
type statement struct {
	question string // ?, as SQLite takes them
	dollar   string // $1, $2, …, as PostgreSQL takes them
}

func newStatement(sql string) *statement {
	var b strings.Builder
	n := 0
	for _, c := range sql {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return &statement{question: sql, dollar: b.String()}
}

// placeholders returns "?, ?, …" with n placeholders.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
