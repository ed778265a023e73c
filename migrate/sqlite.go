package migrate

import (
	"errors"
	"strconv"

	"gorm.io/gorm"
)

// errForeignKeysOff is returned by Up on an SQLite connection that does not
// enforce foreign keys.
var errForeignKeysOff = errors.New("sqlite does not enforce foreign keys: open it with _foreign_keys=on (mattn/go-sqlite3) or _pragma=foreign_keys(1)")

var sqlite = dialect{
	check: func(db *gorm.DB) error {
		var on int
		if err := db.Raw("PRAGMA foreign_keys").Scan(&on).Error; err != nil {
			return err
		}
		if on != 1 {
			return errForeignKeysOff
		}
		return nil
	},
	// SQLite serialises writers with one database-wide lock, taken at a
	// transaction's first write. Rewriting user_version with its own value
	// is a write that takes the lock up front, so a concurrent Up waits
	// before it reads the schema rather than after.
	lock: func(tx *gorm.DB) error {
		var version int
		if err := tx.Raw("PRAGMA user_version").Scan(&version).Error; err != nil {
			return err
		}
		return tx.Exec("PRAGMA user_version = " + strconv.Itoa(version)).Error
	},
}
