package sqlite

import (
	"errors"
	"reflect"
)

// extendedForeignKey is SQLITE_CONSTRAINT_FOREIGNKEY, SQLite's extended
// result code of a write that violates a foreign key.
const extendedForeignKey = 787

// extendedCode returns SQLite's extended result code carried by err or an
// error it wraps, without importing the driver that made it: importing
// mattn/go-sqlite3 for its Error type would make every program that links
// the package, PostgreSQL's and MariaDB's too, compile SQLite's C with
// cgo. So it reads the error's shape instead: mattn/go-sqlite3's Error
// holds the code in an integer field ExtendedCode, and
// modernc.org/sqlite's *Error returns it from a method Code.
func extendedCode(err error) (int, bool) {
	for err != nil {
		if code, ok := codeOf(err); ok {
			return code, true
		}
		if many, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range many.Unwrap() {
				if code, ok := extendedCode(e); ok {
					return code, true
				}
			}
			return 0, false
		}
		err = errors.Unwrap(err)
	}
	return 0, false
}

// codeOf returns the extended result code of err itself, not of what it
// wraps.
func codeOf(err error) (int, bool) {
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return 0, false
		}
		v = v.Elem()
	}
	if v.Kind() == reflect.Struct {
		if f := v.FieldByName("ExtendedCode"); f.IsValid() && f.CanInt() {
			return int(f.Int()), true
		}
	}
	// modernc.org/sqlite's Code is the extended code; a method of that
	// name returning anything else is not SQLite's.
	if c, ok := err.(interface{ Code() int }); ok {
		return c.Code(), true
	}
	return 0, false
}
