package migrate

import "gorm.io/gorm"

// advisoryLockKey is the PostgreSQL advisory lock that serialises Up. It is
// an arbitrary constant ("agentpip" in ASCII) that no other application is
// likely to take.
const advisoryLockKey = 0x6167656e74706970

var postgres = dialect{
	check: func(*gorm.DB) error { return nil },
	lock: func(tx *gorm.DB) error {
		return tx.Exec("SELECT pg_advisory_xact_lock(?)", advisoryLockKey).Error
	},
}
