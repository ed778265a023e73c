package repository

import (
	"sync"

	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dialect"
)

// InSchema makes [New] return a Repository of one tenant: every statement
// it sends names its tables in the schema name (on MariaDB, where a schema
// is a database, the database name), whatever schema or database db's
// connections use by default, so one pool serves every tenant. The
// Repository never reads or writes another schema's rows.
// migrate.Up(ctx, db, migrate.InSchema(name)) makes the tables.
//
// Each statement is rendered for the schema once per Repository: the
// creates when it is made, the others the first time they are sent. Make a
// tenant's Repository once and keep it, rather than one per call.
//
// name must be a plain identifier, as migrate.InSchema says; for any
// other name, and on SQLite, which has no schemas, every method returns
// an [*InputError] on "schema", before touching the database.
//
// Statements a Repository sends for other reasons (through [Repository.DB],
// by the caller's plugins) are not rewritten: see [Repository.DB].
func InSchema(name string) Option { return Option{schema: &name} }

// schema is the tenant schema of a Repository made with InSchema.
type schema struct {
	name string
	// quoted is name as the database quotes an identifier.
	quoted string
	// statements maps a statement's text, naming the package's tables
	// bare, to its text naming them in the schema. It holds one entry
	// per statement text the Repository sends, a bounded set.
	statements sync.Map
}

// newSchema checks the schema name of opts, if any, for db's database.
func newSchema(db *gorm.DB, d *dialect.Dialect, opts []Option) (*schema, error) {
	var name *string
	for _, o := range opts {
		if o.schema != nil {
			name = o.schema
		}
	}
	if name == nil {
		return nil, nil
	}
	if reason := d.CheckSchema(*name); reason != "" {
		return nil, &InputError{Field: "schema", Reason: reason}
	}
	return &schema{name: *name, quoted: db.Statement.Quote(*name)}, nil
}

// sql returns query as the Repository sends it: naming its tables in the
// Repository's schema, if it has one.
func (r *Repository) sql(query string) string {
	s := r.schema
	if s == nil {
		return query
	}
	if q, ok := s.statements.Load(query); ok {
		return q.(string)
	}
	q := dialect.Qualify(query, s.quoted)
	s.statements.Store(query, q)
	return q
}

// tabler is a model, which names its table.
type tabler interface{ TableName() string }

// from returns db working on the table of model, in the Repository's
// schema if it has one, for the reads GORM builds from a model.
func (r *Repository) from(db *gorm.DB, model tabler) *gorm.DB {
	if r.schema == nil {
		return db.Table(model.TableName())
	}
	return db.Table(r.schema.name + "." + model.TableName())
}
