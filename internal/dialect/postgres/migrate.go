package postgres

import (
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"sync"

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
//
// Before AutoMigrate, one read of pg_catalog tells whether the schema
// already has every table, column (of its type), index and constraint of
// schema.sql in files: then it is up to date, and AutoMigrate, which sends
// some 120 catalog queries to find that out (200 ms and more), does not
// run. A column of another type than schema.sql's leaves the schema not up
// to date, so that AutoMigrate changes it as it always did; a version
// whose schema changes in another way AutoMigrate makes must make the
// check see that change too.
func migrate(db *gorm.DB, schema string, all []any, files fs.FS) error {
	want, err := objects(files)
	if err != nil {
		return err
	}
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
		if current, err := upToDate(tx, want); err != nil || current {
			return err
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
// 1 ms against 10 ms for a warm session, on every Up that runs AutoMigrate.
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

// The names schema.sql gives the objects it makes.
var (
	createdTable = regexp.MustCompile(`(?m)^CREATE TABLE "(\w+)" \((.*)\);$`)
	// declaredColumn is a column of a CREATE TABLE's list: a quoted name
	// followed by its type, where a key's or a reference's columns are
	// followed by a comma or a parenthesis.
	declaredColumn = regexp.MustCompile(`(?:^|,)"(\w+)" (\w+(?:\(\d+(?:,\d+)?\))?)`)
	// typeNames are the names PostgreSQL's format_type gives the types
	// schema.sql declares by another.
	typeNames    = strings.NewReplacer("varchar(", "character varying(", "timestamptz", "timestamp with time zone")
	createdIndex = regexp.MustCompile(`(?m)^CREATE (?:UNIQUE )?INDEX IF NOT EXISTS "(\w+)" ON "(\w+)"`)
	// namedConstraint is a constraint of a CREATE TABLE's list or of an
	// ALTER TABLE … ADD CONSTRAINT, of the table that statement names.
	namedConstraint = regexp.MustCompile(`CONSTRAINT "(\w+)"`)
	alteredTable    = regexp.MustCompile(`(?m)^ALTER TABLE "(\w+)" (.*);$`)
)

// parsed holds the objects of each schema.sql text objects has parsed.
// The files are the package's own, embedded, so there is one text per
// database; parsing it again on every Up made an Up on an up-to-date
// schema take 1.7 times as long (see BenchmarkUp).
var parsed sync.Map // string → []string

// objects returns the objects schema.sql in files makes, as the lines
// catalogObjects reads, sorted. The slice is shared: callers only read it.
func objects(files fs.FS) ([]string, error) {
	b, err := fs.ReadFile(files, "schema.sql")
	if err != nil {
		return nil, err
	}
	if objs, ok := parsed.Load(string(b)); ok {
		return objs.([]string), nil
	}
	var objs []string
	for _, m := range createdTable.FindAllStringSubmatch(string(b), -1) {
		objs = append(objs, "table "+m[1])
		for _, c := range declaredColumn.FindAllStringSubmatch(m[2], -1) {
			objs = append(objs, "column "+m[1]+"."+c[1]+" "+typeNames.Replace(strings.ToLower(c[2])))
		}
		for _, c := range namedConstraint.FindAllStringSubmatch(m[2], -1) {
			objs = append(objs, "constraint "+m[1]+"."+c[1])
		}
	}
	for _, m := range createdIndex.FindAllStringSubmatch(string(b), -1) {
		objs = append(objs, "index "+m[2]+"."+m[1])
	}
	for _, m := range alteredTable.FindAllStringSubmatch(string(b), -1) {
		for _, c := range namedConstraint.FindAllStringSubmatch(m[2], -1) {
			objs = append(objs, "constraint "+m[1]+"."+c[1])
		}
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("schema.sql declares nothing")
	}
	slices.Sort(objs)
	parsed.Store(string(b), objs)
	return objs, nil
}

// catalogObjects reads, in one statement, the columns, indexes and
// constraints of the tables named ? of the current schema, and those
// tables, named as objects names them. It finds the tables by the index
// on their schema and name, and the rest by the indexes on their table.
const catalogObjects = `WITH t AS (SELECT c.oid, c.relname FROM pg_class c
	WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) AND c.relname IN ? AND c.relkind IN ('r', 'p'))
SELECT 'table ' || t.relname FROM t
UNION ALL
SELECT 'column ' || t.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) FROM t JOIN pg_attribute a ON a.attrelid = t.oid WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'index ' || t.relname || '.' || i.relname FROM t JOIN pg_index x ON x.indrelid = t.oid JOIN pg_class i ON i.oid = x.indexrelid
UNION ALL
SELECT 'constraint ' || t.relname || '.' || k.conname FROM t JOIN pg_constraint k ON k.conrelid = t.oid`

// upToDate reports whether tx's current schema has every object of want.
func upToDate(tx *gorm.DB, want []string) (bool, error) {
	var tables, have []string
	for _, o := range want {
		if t, ok := strings.CutPrefix(o, "table "); ok {
			tables = append(tables, t)
		}
	}
	if err := tx.Raw(catalogObjects, tables).Scan(&have).Error; err != nil {
		return false, fmt.Errorf("read the catalog: %w", err)
	}
	slices.Sort(have)
	for _, o := range want {
		if _, found := slices.BinarySearch(have, o); !found {
			return false, nil
		}
	}
	return true, nil
}
