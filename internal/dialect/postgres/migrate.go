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
//
// In a schema, the transaction creates the schema if it is missing and
// sets its search_path (SET LOCAL, which ends with it, so the connection
// goes back to the pool as it came, and PgBouncer's transaction pooling
// keeps it) to the schema alone, where GORM's migrator then finds and
// makes the tables. The catalog is read first: on Citus with schema-based
// sharding, CREATE SCHEMA IF NOT EXISTS would distribute an existing
// schema that its owner kept local.
func migrate(db *gorm.DB, schema string, all []any, _ fs.FS) error {
	return db.Transaction(func(tx *gorm.DB) error {
		// The key is the schema's: migrations of one schema wait for each
		// other, and those of others, such as other tenants' or each
		// test's own, do not.
		if err := tx.Exec("SELECT pg_advisory_xact_lock(CAST(? AS bigint) # hashtextextended(COALESCE(NULLIF(?, ''), current_schema()), 0))", advisoryLockKey, schema).Error; err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if schema != "" {
			if err := useSchema(tx, schema); err != nil {
				return err
			}
		}
		if err := tx.AutoMigrate(all...); err != nil {
			return err
		}
		// The foreign key on both the parent's ID and the run's needs the
		// unique index AutoMigrate creates after a table's constraints.
		// Adding it checks the rows already there, whose parent is NULL,
		// and rewrites none of them.
		linked, err := hasParentConstraint(tx)
		if err != nil {
			return fmt.Errorf("find the link of sub-agent invocations to their parents: %w", err)
		}
		if !linked {
			if err := tx.Migrator().CreateConstraint(&models.AgentInvocation{}, parentRelation); err != nil {
				return fmt.Errorf("link sub-agent invocations to their parents: %w", err)
			}
		}
		return nil
	})
}

// hasParentConstraint reports whether the table of agent invocations in
// tx's current schema has the foreign key of parentRelation, by the names
// GORM gives both under tx's naming strategy. It reads pg_catalog, where
// GORM's HasConstraint reads information_schema.table_constraints: about
// 1 ms against 10 ms for a warm session, on every migrate.Up.
func hasParentConstraint(tx *gorm.DB) (bool, error) {
	stmt := &gorm.Statement{DB: tx}
	if err := stmt.Parse(&models.AgentInvocation{}); err != nil {
		return false, err
	}
	rel, ok := stmt.Schema.Relationships.Relations[parentRelation]
	if !ok {
		return false, fmt.Errorf("no relation %s", parentRelation)
	}
	c := rel.ParseConstraint()
	if c == nil {
		return false, fmt.Errorf("relation %s has no foreign key", parentRelation)
	}
	var exists bool
	err := tx.Raw(`SELECT EXISTS (SELECT FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
		WHERE n.nspname = current_schema() AND t.relname = ? AND c.conname = ?)`, stmt.Schema.Table, c.Name).Scan(&exists).Error
	return exists, err
}

// useSchema creates schema if it is missing and makes it the only one on
// tx's search_path until tx ends.
func useSchema(tx *gorm.DB, schema string) error {
	var exists bool
	if err := tx.Raw("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = ?)", schema).Scan(&exists).Error; err != nil {
		return fmt.Errorf("find schema %q: %w", schema, err)
	}
	quoted := tx.Statement.Quote(schema)
	if !exists {
		if err := tx.Exec("CREATE SCHEMA IF NOT EXISTS " + quoted).Error; err != nil {
			return fmt.Errorf("create schema %q: %w", schema, err)
		}
	}
	if err := tx.Exec("SET LOCAL search_path TO " + quoted).Error; err != nil {
		return fmt.Errorf("use schema %q: %w", schema, err)
	}
	return nil
}
