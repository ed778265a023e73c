package migrate

import (
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/models"
)

// advisoryLockKey is the PostgreSQL advisory lock that serialises Up. It is
// an arbitrary constant ("agentpip" in ASCII) that no other application is
// likely to take.
const advisoryLockKey = 0x6167656e74706970

// parentRelation is the field of models.AgentInvocation whose foreign key
// links a sub-agent invocation to its parent.
const parentRelation = "ParentInvocation"

var postgres = dialect{
	check: func(*gorm.DB) error { return nil },
	lock: func(tx *gorm.DB) error {
		return tx.Exec("SELECT pg_advisory_xact_lock(?)", advisoryLockKey).Error
	},
	// PostgreSQL changes a table in place, so nothing needs refusing.
	guard: func(tx *gorm.DB) *gorm.DB { return tx },
	// Adding the foreign key checks the rows already there, whose parent is
	// NULL, and rewrites none of them.
	parentInvocations: func(tx *gorm.DB) error {
		m := tx.Migrator()
		if m.HasConstraint(&models.AgentInvocation{}, parentRelation) {
			return nil
		}
		return m.CreateConstraint(&models.AgentInvocation{}, parentRelation)
	},
}
