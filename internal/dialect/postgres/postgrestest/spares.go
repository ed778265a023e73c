package postgrestest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// spares holds, per server DSN, the migrated schemas that tests of the
// process are done with, emptied for the next test that asks Migrated for
// one, and the shape that a schema must keep to be reused.
//
// Making a schema, migrating it and dropping it again costs the server
// some 100 ms of CPU (its tables, indexes and constraints are a few
// hundred catalog rows), as much as many a test of the contract suite
// costs it otherwise. Emptying a schema with TRUNCATE costs a fraction
// of that.
var spares = struct {
	sync.Mutex
	servers map[string]*spareSchemas
}{servers: map[string]*spareSchemas{}}

type spareSchemas struct {
	admin *sql.DB
	// shape is the digest shapeQuery gives of a schema migrate made, and
	// tables its tables, quoted and separated by commas; both are read
	// from the first schema made for the server.
	shape, tables string
	free          []string
}

// Migrated is FreshSchema for a test that wants its schema migrated: it
// returns a pool of connections to a schema of its own, and its name, in
// which migrate ran. The schema is new, or one that another test of the
// process was done with and left in the shape migrate made it (its
// tables, columns, indexes, constraints, triggers, functions, owners,
// privileges and statistics, as shapeQuery reads them), whose tables
// were emptied.
//
// When the test ends, its schema goes back to the spares if it kept that
// shape and its tables could be emptied at once, or is dropped. A test
// binary that calls Migrated drops the spares once its tests have run,
// with DropSpares.
func Migrated(tb testing.TB, dsn string, migrate func(db *sql.DB, schema string) error) (*sql.DB, string) {
	tb.Helper()
	admin := Admin(tb, dsn)
	s, schema := takeSpare(dsn, admin)
	spare := schema != ""
	if !spare {
		schema = createSchema(tb, admin)
	}
	sqlDB, closeDB := shared(tb, dsn, schema)
	keepConns(sqlDB)
	tb.Cleanup(func() {
		closeDB()
		if err := s.release(schema); err != nil {
			tb.Errorf("%v", err)
		}
	})
	if spare {
		return sqlDB, schema
	}
	if err := migrate(sqlDB, schema); err != nil {
		tb.Fatalf("migrate schema %s: %v", schema, err)
	}
	if err := s.learn(schema); err != nil {
		tb.Fatalf("read the shape of schema %s: %v", schema, err)
	}
	return sqlDB, schema
}

// takeSpare returns the spares of dsn, and one of its schemas for a test
// to use, or "" when there is none.
func takeSpare(dsn string, admin *sql.DB) (*spareSchemas, string) {
	spares.Lock()
	defer spares.Unlock()
	s := spares.servers[dsn]
	if s == nil {
		s = &spareSchemas{admin: admin}
		spares.servers[dsn] = s
	}
	if n := len(s.free); n > 0 {
		schema := s.free[n-1]
		s.free = s.free[:n-1]
		return s, schema
	}
	return s, ""
}

// learn records the shape and the tables of schema, just migrated, as
// those of every migrated schema, unless a schema did before.
func (s *spareSchemas) learn(schema string) error {
	spares.Lock()
	known := s.shape != ""
	spares.Unlock()
	if known {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	shape, err := s.read(ctx, schema)
	if err != nil {
		return err
	}
	var tables string
	if err := s.admin.QueryRowContext(ctx, `SELECT string_agg(quote_ident(c.relname), ', ' ORDER BY c.relname)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')`, schema).Scan(&tables); err != nil {
		return err
	}
	spares.Lock()
	if s.shape == "" {
		s.shape, s.tables = shape, tables
	}
	spares.Unlock()
	return nil
}

// release empties schema and keeps it for another test if it has the
// shape of a migrated schema, and otherwise drops it.
func (s *spareSchemas) release(schema string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spares.Lock()
	want, tables := s.shape, s.tables
	spares.Unlock()
	if want != "" {
		if shape, err := s.read(ctx, schema); err == nil && shape == want && s.empty(ctx, schema, tables) == nil {
			spares.Lock()
			s.free = append(s.free, schema)
			spares.Unlock()
			return nil
		}
	}
	return dropSchema(s.admin, schema)
}

// empty truncates tables of schema (see spareSchemas), in a transaction
// that works in schema and waits at most a second for their locks: a
// statement of the test still running (one it gave up on) makes the
// schema go, rather than the test wait.
func (s *spareSchemas) empty(ctx context.Context, schema, tables string) error {
	tx, err := s.admin.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, "SELECT set_config('lock_timeout', '1s', true), set_config('search_path', $1, true)",
		pgx.Identifier{schema}.Sanitize()); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "TRUNCATE "+tables+" RESTART IDENTITY"); err != nil {
		return err
	}
	return tx.Commit()
}

// shapeQuery describes the schema named $1 as one digest of everything a
// test could change in it and the next test would see: its owner and
// privileges; each relation's kind, owner, privileges, options and row
// security; each column, dropped ones included (a column dropped and
// added again comes back in another place), with its type, nullability,
// default and privileges; indexes, constraints and triggers (foreign
// keys' own ones included, whose enabled state ALTER TABLE … DISABLE
// TRIGGER ALL changes), policies and rules; and how many statistics
// (which ANALYZE leaves, and TRUNCATE keeps), functions, types,
// operators and other objects it holds. Definitions name the
// schema, which the digest leaves out, so that two schemas of the same
// shape have the same digest.
const shapeQuery = `
WITH ns AS (SELECT oid, nspname FROM pg_namespace WHERE nspname = $1),
rel AS (SELECT c.* FROM pg_class c, ns WHERE c.relnamespace = ns.oid),
lines AS (
	SELECT format('schema %s %s', nspowner::regrole, nspacl) AS line FROM pg_namespace, ns WHERE pg_namespace.oid = ns.oid
	UNION ALL
	SELECT format('relation %s %s %s %s %s %s %s %s %s', relname, relkind, relowner::regrole, relacl, reloptions,
		relpersistence, relrowsecurity, relforcerowsecurity, relreplident) FROM rel
	UNION ALL
	SELECT format('column %s #%s %s %s %s %s %s %s %s %s', c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
		a.attnotnull, a.attisdropped, pg_get_expr(d.adbin, d.adrelid), a.attacl, a.attidentity, a.attgenerated)
	FROM pg_attribute a JOIN rel c ON c.oid = a.attrelid
	LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
	WHERE a.attnum > 0
	UNION ALL
	SELECT format('index %s', pg_get_indexdef(i.indexrelid)) FROM pg_index i JOIN rel c ON c.oid = i.indrelid
	UNION ALL
	SELECT format('constraint %s %s %s %s', c.relname, k.conname, pg_get_constraintdef(k.oid), k.convalidated)
	FROM pg_constraint k JOIN rel c ON c.oid = k.conrelid
	UNION ALL
	SELECT format('trigger %s %s %s %s %s', c.relname, t.tgfoid::regproc, t.tgtype, t.tgenabled,
		CASE WHEN t.tgisinternal THEN 'internal' ELSE pg_get_triggerdef(t.oid) END)
	FROM pg_trigger t JOIN rel c ON c.oid = t.tgrelid
	UNION ALL
	SELECT format('policy %s %s %s %s %s', c.relname, p.polname, p.polcmd, pg_get_expr(p.polqual, p.polrelid),
		pg_get_expr(p.polwithcheck, p.polrelid)) FROM pg_policy p JOIN rel c ON c.oid = p.polrelid
	UNION ALL
	SELECT format('rule %s %s', c.relname, r.rulename) FROM pg_rewrite r JOIN rel c ON c.oid = r.ev_class
	UNION ALL
	SELECT format('objects %s %s %s %s %s %s %s %s',
		(SELECT count(*) FROM pg_stats WHERE schemaname = $1),
		(SELECT count(*) FROM pg_proc, ns WHERE pronamespace = ns.oid),
		(SELECT count(*) FROM pg_type, ns WHERE typnamespace = ns.oid),
		(SELECT count(*) FROM pg_operator, ns WHERE oprnamespace = ns.oid),
		(SELECT count(*) FROM pg_collation, ns WHERE collnamespace = ns.oid),
		(SELECT count(*) FROM pg_conversion, ns WHERE connamespace = ns.oid),
		(SELECT count(*) FROM pg_statistic_ext, ns WHERE stxnamespace = ns.oid),
		(SELECT count(*) FROM pg_opfamily, ns WHERE opfnamespace = ns.oid))
)
SELECT md5(string_agg(replace(line, quote_ident($1) || '.', ''), E'\n' ORDER BY replace(line, quote_ident($1) || '.', ''))) FROM lines`

// read returns the digest of schema's shape (see shapeQuery).
func (s *spareSchemas) read(ctx context.Context, schema string) (string, error) {
	var shape sql.NullString
	if err := s.admin.QueryRowContext(ctx, shapeQuery, schema).Scan(&shape); err != nil {
		return "", err
	}
	if !shape.Valid {
		return "", fmt.Errorf("schema %s is gone", schema)
	}
	return shape.String, nil
}

// DropSpares drops the spare schemas of Migrated: a test binary that
// calls Migrated calls it once its tests have run.
func DropSpares() error {
	spares.Lock()
	defer spares.Unlock()
	var errs []error
	for _, s := range spares.servers {
		for _, schema := range s.free {
			errs = append(errs, dropSchema(s.admin, schema))
		}
		s.free = nil
	}
	return errors.Join(errs...)
}
