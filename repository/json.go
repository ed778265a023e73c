package repository

// jsonValue is canonical JSON on its way to a JSON column; nil is SQL NULL.
//
// It binds as text (see dialect.json), except where a dialect needs
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
