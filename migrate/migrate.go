// Package migrate creates and updates the schema of the pipeline tables:
// [Up] makes the tables of [Models] and upgrades them in place, and
// migrate/sql holds the same DDL for other migration tools. The module's
// docs/schema.md tells how each upgrade was made and tested.
package migrate

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dialect"
	"github.com/agentpipeline/persistence/internal/dialects"
	"github.com/agentpipeline/persistence/models"
)

// Models lists the models [Up] migrates, parents before children.
func Models() []any {
	return []any{
		&models.FeatureRun{},
		&models.Sandbox{},
		&models.PhaseResult{},
		&models.AgentInvocation{},
		&models.CTAEvent{},
	}
}

// Up brings the schema of the five pipeline tables up to date. It is
// idempotent: on an up-to-date schema it only reads the catalog. It
// upgrades a schema that an earlier version made without losing or
// changing a row: it adds tables, columns, indexes and constraints, and
// never drops or rewrites one. Processes starting at once migrate one
// after another.
//
// On PostgreSQL, Up first reads pg_catalog once, in a transaction holding
// an advisory lock: a schema that has every table, column (of its type),
// index and constraint of migrate/sql/postgres/schema.sql is up to date,
// and Up ends there, in a few milliseconds where AutoMigrate's checks take
// a couple of hundred.
//
// Otherwise, and on SQLite, Up runs GORM's AutoMigrate in one transaction
// (on PostgreSQL the same, holding the lock), then links a sub-agent
// invocation to its parent ([models.AgentInvocation].ParentInvocationID): on
// PostgreSQL by a foreign key on both the parent's ID and the run's, which
// needs the unique index AutoMigrate creates after a table's constraints;
// on SQLite by triggers that check the same, as SQLite adds a foreign key
// to an existing table only by rebuilding the table.
//
// On SQLite it first checks that the connection enforces foreign keys,
// without which deleting a run would leave its children behind and a
// child could name a run that does not exist. It also refuses to rebuild a
// table, which is how GORM makes on SQLite the changes SQLite cannot make
// in place (a new constraint, a changed column): rebuilding a table drops
// it, which with foreign keys on deletes the rows of every table that
// refers to it. Such a change fails Up, with nothing changed, rather than
// lose rows.
//
// On MariaDB it first refuses a server other than MariaDB 10.11 or later,
// and, with a [*SettingError], a connection that does not parse times
// (parseTime=true), does not use utf8mb4, has autocommit off, is not in a
// strict SQL mode or has EMPTY_STRING_IS_NULL in it, or names columns by
// their table (columnsWithAlias=true). It refuses, with a [*SchemaError], a
// schema whose columns have another type than those it makes, or, for
// IDs, names and statuses, another collation, such as the one GORM's
// AutoMigrate makes, and changes nothing then. It then sends the
// statements of migrate/sql/mariadb's numbered files that the schema
// lacks, in order, holding a named lock (GET_LOCK) on one connection: a
// CREATE TABLE when its table is missing, an ALTER TABLE … ADD COLUMN
// when its column is missing, and a CREATE INDEX when its index is
// missing. MariaDB commits each DDL statement on its own, so Up is not
// one transaction there: each statement creates one whole table, adds one
// column or adds one index, atomically, and an interrupted Up leaves some
// statements made and the rest not, which the next Up makes.
//
// With [InSchema], Up makes and updates the tables of one tenant's schema
// instead; see there.
//
// The files in migrate/sql hold the DDL Up sends, for teams that run their
// own migration tool (see docs/schema.md).
func Up(ctx context.Context, db *gorm.DB, opts ...Option) error {
	var o Option
	for _, opt := range opts {
		if opt.schema != nil {
			o.schema = opt.schema
		}
	}
	d, err := dialects.Of(db)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var schema string
	if o.schema != nil {
		schema = *o.schema
		if reason := d.CheckSchema(schema); reason != "" {
			return fmt.Errorf("migrate: %w: schema: %s", ErrInvalidInput, reason)
		}
	}
	files, err := fs.Sub(sqlFiles, "sql/"+d.Name)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := d.Migrate(db.WithContext(ctx), schema, Models(), files); err != nil {
		if schema != "" {
			return fmt.Errorf("migrate schema %q: %w", schema, err)
		}
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// Option changes what [Up] migrates.
type Option struct {
	schema *string
}

// InSchema makes [Up] create the schema name if it is missing (on MariaDB,
// where a schema is a database, the database name) and bring the tables in
// it up to date, whatever schema db's connections use by default: the
// tables a Repository made with repository.InSchema(name) works on.
// Migrations of one schema run one after another, and those of different
// schemas in parallel.
//
// name must be a plain identifier: lower-case letters, digits and
// underscores, not starting with a digit, at most 63 bytes, and not a
// name the database keeps for itself (pg_… and information_schema on
// PostgreSQL; mysql, information_schema, performance_schema and sys on
// MariaDB). Up returns an error matching [ErrInvalidInput] for any other
// name, and on SQLite, which has no schemas, and then sends nothing.
//
// On PostgreSQL, Up reads pg_namespace before it creates the schema, so
// that on Citus with citus.enable_schema_based_sharding an existing
// schema is not made distributed: only a schema Up creates is. On MariaDB
// the connection Up migrates through is closed afterwards rather than
// returned to the pool, as it was switched to the schema with USE.
func InSchema(name string) Option { return Option{schema: &name} }

// ErrInvalidInput means an argument of Up was rejected before the
// database was touched, such as a schema name that is not a plain
// identifier. It is the same error as repository.ErrInvalidInput.
var ErrInvalidInput = dialect.ErrInvalidInput

// sqlFiles are the files of migrate/sql.
//
//go:embed sql
var sqlFiles embed.FS
