package repository

import (
	"database/sql"
	"fmt"

	"gorm.io/gorm"
)

// dialect holds the SQL that differs between databases. Each supported
// database has its own in dialect_<name>.go; everything else is shared.
type dialect struct {
	// appendMemories appends the JSON array $1 to the memories of run $2,
	// skipping values already present, and sets updated_at to $3, in one
	// statement. It changes no row when the run is not running or every
	// value is already present.
	appendMemories string
	// memoriesState returns, for run @id, its status and how many values of
	// the JSON array @new its memories lack.
	memoriesState string
	// expireCTAEvents times out at most @limit pending CTA events whose
	// expires_at is at or before @now, setting updated_at to @updated, and
	// returns their IDs.
	expireCTAEvents string
	// snapshot are the options of a transaction whose reads all see one
	// snapshot of the database.
	snapshot *sql.TxOptions
	// numbersAsBlob binds top-level JSON numbers as BLOBs; see jsonValue.
	numbersAsBlob bool
	// dollarParams says the database takes $1-style placeholders, not ?.
	dollarParams bool
	// err is why the database is not supported, for a dialect we lack.
	err error
}

var dialects = map[string]*dialect{
	"postgres": &postgres,
	"sqlite":   &sqlite,
}

// sql returns s in the dialect's placeholder style.
func (d *dialect) sql(s *statement) string {
	if d.dollarParams {
		return s.dollar
	}
	return s.question
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
