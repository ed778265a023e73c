// Package migrate creates and updates the schema of the pipeline tables.
package migrate

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/models"
)

// Models lists the models Up migrates, parents before children.
func Models() []any {
	return []any{
		&models.FeatureRun{},
		&models.Sandbox{},
		&models.PhaseResult{},
		&models.AgentInvocation{},
		&models.CTAEvent{},
	}
}

// Up brings the schema of the five pipeline tables up to date with GORM's
// AutoMigrate, in one transaction. It is idempotent: on an up-to-date schema
// it only reads the catalog.
//
// On PostgreSQL it holds an advisory lock for the transaction, so processes
// starting at once migrate one after another. On SQLite it first checks that
// the connection enforces foreign keys, without which deleting a run would
// leave its children behind and a child could name a run that does not exist.
func Up(ctx context.Context, db *gorm.DB) error {
	d, ok := dialects[db.Dialector.Name()]
	if !ok {
		return fmt.Errorf("migrate: database %q is not supported (use postgres or sqlite)", db.Dialector.Name())
	}
	db = db.WithContext(ctx)
	if err := d.check(db); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	err := db.Transaction(func(tx *gorm.DB) error {
		if err := d.lock(tx); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		return tx.AutoMigrate(Models()...)
	})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// dialect holds what Up does differently on each database.
type dialect struct {
	// check verifies the connection's settings before migrating.
	check func(db *gorm.DB) error
	// lock serialises concurrent migrations until tx ends.
	lock func(tx *gorm.DB) error
}

var dialects = map[string]dialect{
	"postgres": postgres,
	"sqlite":   sqlite,
}
