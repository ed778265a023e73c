package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"testing"

	_ "github.com/mattn/go-sqlite3" // the driver whose errors are read, here only
	gormsqlite "gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// fakeError has the shape of mattn/go-sqlite3's Error: a struct value
// with integer fields Code and ExtendedCode and unexported ones.
type fakeError struct {
	Code         int
	ExtendedCode int
	msg          string
}

func (e fakeError) Error() string { return e.msg }

// codeError has the shape of modernc.org/sqlite's *Error.
type codeError struct{ code int }

func (e *codeError) Error() string { return "sqlite error" }
func (e *codeError) Code() int     { return e.code }

// violation returns the error mattn/go-sqlite3 gives for a row whose
// parent is missing.
func violation(t *testing.T) error {
	t.Helper()
	db, err := sql.Open("sqlite3", "file::memory:?_foreign_keys=on")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		`CREATE TABLE parent (id INTEGER PRIMARY KEY)`,
		`CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id))`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	_, err = db.Exec(`INSERT INTO child (id, parent_id) VALUES (1, 2)`)
	if err == nil {
		t.Fatal("an orphan row was inserted")
	}
	return err
}

func TestExtendedCodeOfTheDriversError(t *testing.T) {
	err := violation(t)
	for name, err := range map[string]error{
		"as returned": err,
		"wrapped":     fmt.Errorf("create: %w", err),
		"joined":      errors.Join(errors.New("other"), fmt.Errorf("create: %w", err)),
	} {
		code, ok := extendedCode(err)
		if !ok || code != extendedForeignKey {
			t.Errorf("%s: extendedCode(%v) = %d, %v; want %d, true", name, err, code, ok, extendedForeignKey)
		}
	}
}

func TestExtendedCodeByShape(t *testing.T) {
	var nilPtr *codeError
	for _, c := range []struct {
		err  error
		code int
		ok   bool
	}{
		{fakeError{Code: 19, ExtendedCode: 787, msg: "FOREIGN KEY constraint failed"}, 787, true},
		{&fakeError{Code: 19, ExtendedCode: 2067}, 2067, true},
		{fmt.Errorf("wrapped: %w", &codeError{code: 787}), 787, true},
		{errors.New("FOREIGN KEY constraint failed"), 0, false},
		{nilPtr, 0, false},
		{sql.ErrNoRows, 0, false},
	} {
		code, ok := extendedCode(c.err)
		if code != c.code || ok != c.ok {
			t.Errorf("extendedCode(%#v) = %d, %v; want %d, %v", c.err, code, ok, c.code, c.ok)
		}
	}
}

// TestForeignKeyWithoutTranslator: the dialect recognises the violation
// from the error alone, wrapped or not, whatever dialector opened the
// database, where gorm.io/driver/sqlite's translator sees no code in a
// wrapped error.
func TestForeignKeyWithoutTranslator(t *testing.T) {
	err := violation(t)
	db, gerr := gorm.Open(gormsqlite.Open("file::memory:"), &gorm.Config{Logger: logger.Discard})
	if gerr != nil {
		t.Fatal(gerr)
	}
	wrapped := fmt.Errorf("create: %w", err)
	if errors.Is(db.Dialector.(gorm.ErrorTranslator).Translate(wrapped), gorm.ErrForeignKeyViolated) {
		t.Log("gorm.io/driver/sqlite now translates wrapped errors too")
	}
	if _, ok := Dialect.ForeignKey(db, wrapped); !ok {
		t.Errorf("ForeignKey(%v) = false; want true", wrapped)
	}
	if _, ok := Dialect.ForeignKey(db, errors.New("UNIQUE constraint failed: child.id")); ok {
		t.Error("ForeignKey took a unique violation for a foreign key's")
	}
	if name, ok := Dialect.ForeignKey(db, errors.New(foreignKeyMessage+"fk_child_parent (raised)")); !ok || name != "fk_child_parent" {
		t.Errorf("ForeignKey of a trigger's error = %q, %v; want fk_child_parent, true", name, ok)
	}
}
