package repository

import (
	"database/sql"
	"errors"
	"fmt"

	"gorm.io/gorm"
)

// dialect holds what differs between databases. Each supported database has
// its own in dialect_<name>.go and one line in dialects; everything else is
// shared.
type dialect struct {
	// guard renders a guardedUpdate for the database.
	guard func(g *guardedUpdate) *guard
	// appendMemories appends the canonical JSON array vars[0] to the
	// memories of run vars[2], skipping values already present, and sets
	// updated_at to vars[1]. It changes no row when the run is not running
	// or every value is already present; a run whose memories already hold
	// every value is codeDone.
	appendMemories *guard
	// expireCTAEvents times out at most vars[2] pending CTA events whose
	// expires_at is at or before vars[0], setting resolved_at to vars[0] and
	// updated_at to vars[1], and returns their IDs.
	expireCTAEvents string
	// snapshot are the options of a transaction whose reads all see one
	// snapshot of the database.
	snapshot *sql.TxOptions
	// numbersAsBlob binds top-level JSON numbers as BLOBs; see jsonValue.
	numbersAsBlob bool
	// foreignKey recognises the error of a write that referred to a
	// missing parent row, and names the violated constraint if the
	// database says which.
	foreignKey func(db *gorm.DB, err error) (constraint string, ok bool)
	// err is why the database is not supported, for a dialect we lack.
	err error
}

var dialects = map[string]*dialect{
	"postgres": &postgres,
	"sqlite":   &sqlite,
}

// json returns the statement argument that stores j; see jsonValue.
func (d *dialect) json(j jsonValue) any {
	switch {
	case j == nil:
		return nil
	case d.numbersAsBlob && isNumber(j):
		return []byte(j)
	}
	return string(j)
}

func dialectOf(db *gorm.DB) *dialect {
	name := db.Dialector.Name()
	if d, ok := dialects[name]; ok {
		return d
	}
	return &dialect{err: fmt.Errorf("repository: database %q is not supported (use postgres or sqlite)", name)}
}

// foreignKeyError is the error of a write that referred to a missing
// parent row.
type foreignKeyError struct {
	// constraint names the violated foreign key; empty where the database
	// does not say.
	constraint string
}

func (e *foreignKeyError) Error() string { return "foreign key " + e.constraint + " violated" }

// translatedForeignKey recognises a foreign key violation by GORM's
// ErrorTranslator, for databases whose errors do not name the constraint.
func translatedForeignKey(db *gorm.DB, err error) (string, bool) {
	t, ok := db.Dialector.(gorm.ErrorTranslator)
	return "", ok && errors.Is(t.Translate(err), gorm.ErrForeignKeyViolated)
}
