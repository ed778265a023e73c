package postgres

import (
	"fmt"
	"io/fs"

	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/models"
)

// advisoryLockKey, mixed with a hash of the schema's name, is the
// PostgreSQL advisory lock that serialises the migrations of a schema. It
// is an arbitrary constant ("agentpip" in ASCII) that no other application
// is likely to take.
const advisoryLockKey = 0x6167656e74706970

// parentRelation is the field of models.AgentInvocation whose foreign key
// links a sub-agent invocation to its parent.
const parentRelation = "ParentInvocation"

// migrate runs GORM's AutoMigrate in one transaction that holds an
// advisory lock, so processes starting at once migrate one after another
// and an interrupted migration leaves nothing behind. PostgreSQL changes a
// table in place, so nothing needs refusing.
func migrate(db *gorm.DB, all []any, _ fs.FS) error {
	return db.Transaction(func(tx *gorm.DB) error {
		// The key is the schema's: migrations of one schema wait for each
		// other, and those of others, such as each test's own, do not.
		if err := tx.Exec("SELECT pg_advisory_xact_lock(CAST(? AS bigint) # hashtextextended(current_schema(), 0))", advisoryLockKey).Error; err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if err := tx.AutoMigrate(all...); err != nil {
			return err
		}
		// The foreign key on both the parent's ID and the run's needs the
		// unique index AutoMigrate creates after a table's constraints.
		// Adding it checks the rows already there, whose parent is NULL,
		// and rewrites none of them.
		m := tx.Migrator()
		if !m.HasConstraint(&models.AgentInvocation{}, parentRelation) {
			if err := m.CreateConstraint(&models.AgentInvocation{}, parentRelation); err != nil {
				return fmt.Errorf("link sub-agent invocations to their parents: %w", err)
			}
		}
		return nil
	})
}
