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
// it only reads the catalog. It upgrades a schema that an earlier version
// made without losing or changing a row: it adds tables, columns, indexes
// and constraints, and never drops or rewrites one.
//
// The link from a sub-agent invocation to its parent
// (models.AgentInvocation.ParentInvocationID) is made after AutoMigrate: on
// PostgreSQL a foreign key on both the parent's ID and the run's, which
// needs the unique index AutoMigrate creates after a table's constraints;
// on SQLite triggers that check the same, as SQLite adds a foreign key to
// an existing table only by rebuilding the table (see below).
//
// On PostgreSQL it holds an advisory lock for the transaction, so processes
// starting at once migrate one after another. On SQLite it first checks that
// the connection enforces foreign keys, without which deleting a run would
// leave its children behind and a child could name a run that does not
// exist. It also refuses to rebuild a table, which is how GORM makes on
// SQLite the changes SQLite cannot make in place (a new constraint, a
// changed column): rebuilding a table drops it, which with foreign keys on
// deletes the rows of every table that refers to it. Such a change fails
// Up, with nothing changed, rather than lose rows.
//
// The files in migrate/sql hold the DDL Up sends, for teams that run their
// own migration tool (see README.md).
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
		tx = d.guard(tx)
		if err := tx.AutoMigrate(Models()...); err != nil {
			return err
		}
		if err := d.parentInvocations(tx); err != nil {
			return fmt.Errorf("link sub-agent invocations to their parents: %w", err)
		}
		return nil
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
	// guard returns tx refusing the statements Up must never send.
	guard func(tx *gorm.DB) *gorm.DB
	// parentInvocations makes the database ensure that an invocation's
	// parent is an invocation of the same run, unless it does already.
	parentInvocations func(tx *gorm.DB) error
}

var dialects = map[string]dialect{
	"postgres": postgres,
	"sqlite":   sqlite,
}
