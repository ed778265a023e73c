package mariadb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dialect"
)

// lockName, followed by the MD5 of the database's name, is the named lock
// (GET_LOCK) that serialises the migrations of a database.
const lockName = "agentpipeline/persistence:"

// MinVersion is the oldest MariaDB the package supports: the one it is
// tested on. migrate refuses older servers, as it refuses MySQL: the
// package relies on JSON_TABLE, SKIP LOCKED and SET STATEMENT, and has
// been tested on neither.
var MinVersion = [2]int{10, 11}

// ErrUnsupportedServer is returned by migrate for a server that is not a
// MariaDB the package supports.
var ErrUnsupportedServer = errors.New("unsupported server")

// migrate checks the server and the connection's settings, then sends the
// statements of files' numbered migrations that the schema lacks, holding
// a named lock on one connection so that processes starting at once
// migrate one after another.
//
// MariaDB commits each DDL statement on its own, so there is no one
// transaction to roll an interrupted migration back. Each statement
// either creates one table, with its indexes and foreign keys, adds one
// column to a table, or adds one index to a table, atomically, and is
// sent only when its table, column or index is missing: an interrupted
// migration leaves some statements made and the others not, and the next
// one makes those.
//
// In a schema (a database, on MariaDB), the connection creates the
// database if it is missing, makes it its default (USE) while it
// migrates, and is then closed rather than returned to the pool with
// another default than the pool's. The lock is the schema's own (taken
// after USE), so tenants migrate in parallel.
func migrate(db *gorm.DB, schema string, _ []any, files fs.FS) error {
	if err := check(db); err != nil {
		return err
	}
	stmts, err := statements(files)
	if err != nil {
		return err
	}
	return db.Connection(func(conn *gorm.DB) error {
		if schema != "" {
			defer discard(conn)
			if err := useSchema(conn, schema); err != nil {
				return err
			}
		}
		var got sql.NullInt64
		// GET_LOCK's timeout is in seconds; the context ends the wait
		// sooner, by closing the connection, which frees the lock too.
		// The lock is the database's: migrations of one database wait for
		// each other, and those of others, such as each test's own, do
		// not. A lock's name has at most 64 characters, a database's too.
		if err := conn.Raw("SELECT GET_LOCK(CONCAT(?, MD5(COALESCE(DATABASE(), ''))), ?)", lockName, lockTimeout(conn.Statement.Context)).Scan(&got).Error; err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if got.Int64 != 1 {
			return fmt.Errorf("lock: another migration of the database held its lock too long")
		}
		defer conn.Exec("SELECT RELEASE_LOCK(CONCAT(?, MD5(COALESCE(DATABASE(), ''))))", lockName)
		var tables []string
		if err := conn.Raw("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()").Scan(&tables).Error; err != nil {
			return err
		}
		var catalog []catalogColumn
		if err := conn.Raw("SELECT table_name AS `table`, column_name AS `name`, column_type AS `type`, collation_name AS `collation` FROM information_schema.columns WHERE table_schema = DATABASE() ORDER BY table_name, ordinal_position").Scan(&catalog).Error; err != nil {
			return err
		}
		// A column of another type or collation than the files declare
		// breaks a promise (an ID compared without regard to case takes
		// "Box" and "box" for one), and Up does not rewrite tables: it
		// refuses the schema before it changes anything.
		if wrong := mismatches(declarations(stmts), catalog); len(wrong) > 0 {
			return &dialect.SchemaError{Columns: wrong, Fix: schemaFix}
		}
		columns := make([]column, len(catalog))
		for i, c := range catalog {
			columns[i] = column{c.Table, c.Name}
		}
		var indexes []column
		if err := conn.Raw("SELECT DISTINCT table_name AS `table`, index_name AS `name` FROM information_schema.statistics WHERE table_schema = DATABASE()").Scan(&indexes).Error; err != nil {
			return err
		}
		// A table this migration creates has none of the columns and
		// indexes read here, so it gets every later ADD COLUMN and CREATE
		// INDEX of its own, as it must: its CREATE TABLE is the one of the
		// version that first had it.
		for _, s := range stmts {
			switch {
			case s.column != "" && slices.Contains(columns, column{s.table, s.column}),
				s.index != "" && slices.Contains(indexes, column{s.table, s.index}),
				s.column == "" && s.index == "" && slices.Contains(tables, s.table):
				continue
			}
			if err := conn.Exec(s.sql).Error; err != nil {
				switch {
				case s.column != "":
					return fmt.Errorf("add column %s.%s: %w", s.table, s.column, err)
				case s.index != "":
					return fmt.Errorf("create index %s on %s: %w", s.index, s.table, err)
				}
				return fmt.Errorf("create table %s: %w", s.table, err)
			}
		}
		return nil
	})
}

// useSchema creates the database schema if it is missing and makes it
// conn's default database.
func useSchema(conn *gorm.DB, schema string) error {
	var exists bool
	if err := conn.Raw("SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = ?)", schema).Scan(&exists).Error; err != nil {
		return fmt.Errorf("find schema %q: %w", schema, err)
	}
	quoted := conn.Statement.Quote(schema)
	if !exists {
		if err := conn.Exec("CREATE DATABASE IF NOT EXISTS " + quoted + " CHARACTER SET utf8mb4").Error; err != nil {
			return fmt.Errorf("create schema %q: %w", schema, err)
		}
	}
	if err := conn.Exec("USE " + quoted).Error; err != nil {
		return fmt.Errorf("use schema %q: %w", schema, err)
	}
	return nil
}

// discard closes conn's connection rather than return it to the pool,
// whose connections must keep the default database of the pool's DSN.
func discard(conn *gorm.DB) {
	if c, ok := conn.Statement.ConnPool.(*sql.Conn); ok {
		_ = c.Raw(func(any) error { return driver.ErrBadConn })
	}
}

// column is a column, or an index, of a table.
type column struct{ Table, Name string }

func lockTimeout(ctx context.Context) int {
	if d, ok := ctx.Deadline(); ok {
		return max(1, int(time.Until(d).Seconds())+1)
	}
	return 24 * 3600
}

// check refuses a server other than a MariaDB the package supports, and a
// connection under whose settings the package would lose or change data,
// or read it wrong (see settings.check).
func check(db *gorm.DB) error {
	rows, err := db.Raw(settingsSQL, settingsProbe).Rows()
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		return errors.Join(errors.New("the settings query returned no row"), rows.Err())
	}
	s, err := readSettings(rows)
	if err != nil {
		return err
	}
	return s.check()
}

var versionNumber = regexp.MustCompile(`^(\d+)\.(\d+)\.\d+-MariaDB`)

// Supported returns nil for the VERSION() of a MariaDB server the package
// supports, and an error matching ErrUnsupportedServer otherwise.
func Supported(version string) error {
	m := versionNumber.FindStringSubmatch(version)
	if m == nil {
		return fmt.Errorf("%w: %s is not MariaDB: only MariaDB %d.%d and later are supported (MySQL is untested, and lacks SET STATEMENT)", ErrUnsupportedServer, version, MinVersion[0], MinVersion[1])
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	if major < MinVersion[0] || (major == MinVersion[0] && minor < MinVersion[1]) {
		return fmt.Errorf("%w: MariaDB %s is older than %d.%d, the oldest supported", ErrUnsupportedServer, version, MinVersion[0], MinVersion[1])
	}
	return nil
}

// statement is one statement of a migration file: a CREATE TABLE of
// table, an ALTER TABLE that adds column to table, or a CREATE INDEX that
// adds index to table.
type statement struct{ table, column, index, sql string }

var (
	createTable = regexp.MustCompile("(?is)^CREATE TABLE IF NOT EXISTS `?(\\w+)`?")
	addColumn   = regexp.MustCompile("(?is)^ALTER TABLE `?(\\w+)`? ADD COLUMN IF NOT EXISTS `?(\\w+)`?\\s")
	// createIndex is a CREATE INDEX, which makes one index of one table
	// (its options, such as ALGORITHM and LOCK, follow the columns).
	createIndex = regexp.MustCompile("(?is)^CREATE (?:UNIQUE )?INDEX IF NOT EXISTS `?(\\w+)`? ON `?(\\w+)`?\\s*\\(")
	// anotherAlter finds a second change in an ALTER TABLE, which the
	// catalog could show made when only the first was.
	anotherAlter = regexp.MustCompile(`(?i),\s*(ADD|DROP|MODIFY|CHANGE|ALTER|RENAME)\b`)
)

// statements returns the statements of files' numbered migrations
// (NNNNNN_name.up.sql), in order. Each must create one table
// (CREATE TABLE IF NOT EXISTS), add one column to a table (ALTER TABLE
// … ADD COLUMN IF NOT EXISTS) or add one index to a table (CREATE INDEX
// IF NOT EXISTS … ON), so that migrate can tell from the catalog whether
// it was made.
func statements(files fs.FS) ([]statement, error) {
	names, err := fs.Glob(files, "*.up.sql")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var stmts []statement
	for _, name := range names {
		b, err := fs.ReadFile(files, name)
		if err != nil {
			return nil, err
		}
		for _, s := range strings.Split(string(b), ";\n") {
			s = strings.TrimSpace(stripComments(s))
			if s == "" {
				continue
			}
			if m := createTable.FindStringSubmatch(s); m != nil {
				stmts = append(stmts, statement{table: m[1], sql: s})
				continue
			}
			if m := addColumn.FindStringSubmatch(s); m != nil && !anotherAlter.MatchString(s) {
				stmts = append(stmts, statement{table: m[1], column: m[2], sql: s})
				continue
			}
			if m := createIndex.FindStringSubmatch(s); m != nil {
				stmts = append(stmts, statement{table: m[2], index: m[1], sql: s})
				continue
			}
			return nil, fmt.Errorf("%s: a statement that neither creates a table (CREATE TABLE IF NOT EXISTS), adds one column (ALTER TABLE … ADD COLUMN IF NOT EXISTS) nor adds one index (CREATE INDEX IF NOT EXISTS … ON): %.60s", name, s)
		}
	}
	return stmts, nil
}

// stripComments drops the lines of s that are comments.
func stripComments(s string) string {
	lines := strings.Split(s, "\n")
	kept := lines[:0]
	for _, l := range lines {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, "\n")
}
