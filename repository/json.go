package repository

// jsonValue is canonical JSON on its way to a JSON column; nil is SQL NULL.
//
// It binds as text (see Repository.json), except where a database needs
// otherwise: SQLite gives columns declared JSON numeric affinity, which
// would turn the text of a top-level JSON number into an SQLite number
// (losing digits beyond a float64, and failing datatypes.JSON's Scan), so
// there numbers bind as a BLOB holding the same text, which SQLite stores
// untouched.
type jsonValue []byte

// isNumber reports whether the canonical JSON j is a number.
func isNumber(j []byte) bool {
	return len(j) > 0 && (j[0] == '-' || (j[0] >= '0' && j[0] <= '9'))
}

// json returns the statement argument that stores j.
func (r *Repository) json(j jsonValue) any {
	switch {
	case j == nil:
		return nil
	case r.dialect.NumbersAsBlob && isNumber(j):
		return []byte(j)
	}
	return string(j)
}
