package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/models"
)

// errForeignKeysOff is returned by migrate on a connection that does not
// enforce foreign keys.
var errForeignKeysOff = errors.New("sqlite does not enforce foreign keys: open it with _foreign_keys=on (mattn/go-sqlite3) or _pragma=foreign_keys(1)")

// parentRelation is the field of models.AgentInvocation whose foreign key
// links a sub-agent invocation to its parent.
const parentRelation = "ParentInvocation"

// migrate first checks that the connection enforces foreign keys, without
// which deleting a run would leave its children behind and a child could
// name a run that does not exist. It then runs GORM's AutoMigrate in one
// transaction, refusing to rebuild a table, which is how GORM makes on
// SQLite the changes SQLite cannot make in place (a new constraint, a
// changed column): rebuilding a table drops it, which with foreign keys on
// deletes the rows of every table that refers to it. Such a change fails,
// with nothing changed, rather than lose rows. The link from a sub-agent
// invocation to its parent is made by triggers (see parentTriggers).
func migrate(db *gorm.DB, _ string, all []any, _ fs.FS) error {
	var on int
	if err := db.Raw("PRAGMA foreign_keys").Scan(&on).Error; err != nil {
		return err
	}
	if on != 1 {
		return errForeignKeysOff
	}
	return db.Transaction(func(tx *gorm.DB) error {
		// SQLite serialises writers with one database-wide lock, taken at
		// a transaction's first write. Rewriting user_version with its own
		// value is a write that takes the lock up front, so a concurrent
		// migration waits before it reads the schema rather than after.
		var version int
		if err := tx.Raw("PRAGMA user_version").Scan(&version).Error; err != nil {
			return err
		}
		if err := tx.Exec("PRAGMA user_version = " + strconv.Itoa(version)).Error; err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		// A session with a context gets a statement of its own, whose
		// connection can change without the transaction's.
		guarded := tx.Session(&gorm.Session{Context: tx.Statement.Context})
		guarded.Statement.ConnPool = &noRebuild{tx.Statement.ConnPool}
		if err := guarded.AutoMigrate(all...); err != nil {
			return err
		}
		if err := createParentTriggers(guarded); err != nil {
			return fmt.Errorf("link sub-agent invocations to their parents: %w", err)
		}
		return nil
	})
}

// createParentTriggers creates those of parentTriggers that are missing.
func createParentTriggers(tx *gorm.DB) error {
	var have []string
	if err := tx.Raw("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'agent_invocations'").Scan(&have).Error; err != nil {
		return err
	}
	triggers, err := parentTriggers(tx)
	if err != nil {
		return err
	}
	for _, t := range triggers {
		if !slices.Contains(have, t.name) {
			if err := tx.Exec(t.sql).Error; err != nil {
				return fmt.Errorf("create trigger %s: %w", t.name, err)
			}
		}
	}
	return nil
}

type trigger struct{ name, sql string }

// parentTriggers returns the triggers that, on SQLite, do the work of the
// foreign key from an invocation to its parent (see
// models.AgentInvocation.ParentInvocationID), which SQLite cannot add to an
// existing table. They check the parent on insert and on update, as a
// foreign key does, and detach the sub-agent invocations of a deleted
// invocation: cascading the delete instead would stop after one level, as
// SQLite does not fire a trigger from itself (recursive_triggers is off
// unless each connection turns it on), and a trigger may not use the
// recursive WITH that would find every level.
//
// The insert trigger leaves alone a row whose ID exists: that insert is a
// replay, which the repository's ON CONFLICT DO NOTHING skips without
// checking a foreign key, as a foreign key would not check it either.
func parentTriggers(db *gorm.DB) ([]trigger, error) {
	stmt := &gorm.Statement{DB: db}
	if err := stmt.Parse(&models.AgentInvocation{}); err != nil {
		return nil, err
	}
	rel, ok := stmt.Schema.Relationships.Relations[parentRelation]
	if !ok || rel.ParseConstraint() == nil {
		return nil, fmt.Errorf("models.AgentInvocation has no %s relation", parentRelation)
	}
	raise := "SELECT RAISE(ABORT, '" + foreignKeyMessage + rel.ParseConstraint().Name + "');"
	const parentInRun = "EXISTS (SELECT 1 FROM agent_invocations AS p WHERE p.id = NEW.parent_invocation_id AND p.feature_run_id = NEW.feature_run_id)"
	return []trigger{
		{"agent_invocations_parent_insert", `CREATE TRIGGER agent_invocations_parent_insert BEFORE INSERT ON agent_invocations
FOR EACH ROW WHEN NEW.parent_invocation_id IS NOT NULL AND NOT ` + parentInRun + `
	AND NOT EXISTS (SELECT 1 FROM agent_invocations AS r WHERE r.id = NEW.id)
BEGIN ` + raise + ` END`},
		{"agent_invocations_parent_update", `CREATE TRIGGER agent_invocations_parent_update BEFORE UPDATE OF parent_invocation_id, feature_run_id ON agent_invocations
FOR EACH ROW WHEN NEW.parent_invocation_id IS NOT NULL AND NOT ` + parentInRun + `
BEGIN ` + raise + ` END`},
		{"agent_invocations_parent_rekey", `CREATE TRIGGER agent_invocations_parent_rekey BEFORE UPDATE OF id, feature_run_id ON agent_invocations
FOR EACH ROW WHEN (NEW.id IS NOT OLD.id OR NEW.feature_run_id IS NOT OLD.feature_run_id)
	AND EXISTS (SELECT 1 FROM agent_invocations AS c WHERE c.parent_invocation_id = OLD.id AND c.feature_run_id = OLD.feature_run_id AND c.id IS NOT OLD.id)
BEGIN ` + raise + ` END`},
		{"agent_invocations_parent_delete", `CREATE TRIGGER agent_invocations_parent_delete AFTER DELETE ON agent_invocations
FOR EACH ROW BEGIN
	UPDATE agent_invocations SET parent_invocation_id = NULL WHERE parent_invocation_id = OLD.id AND feature_run_id = OLD.feature_run_id;
END`},
	}, nil
}

// noRebuild is a connection that refuses to drop a table. GORM's SQLite
// migrator rebuilds a table (creates a copy, copies the rows, drops the
// table, renames the copy) to make a change SQLite cannot make in place;
// with foreign keys on, the drop deletes, by cascade, the rows of every
// table that refers to the dropped one, and the copy is then referred to
// by nothing. Up never drops a table, so refusing the drop fails the
// rebuild, and Up with it, before any row is lost.
type noRebuild struct{ gorm.ConnPool }

var dropTable = regexp.MustCompile(`(?is)^\s*DROP\s+TABLE\b`)

// errRebuild is the error of a change that would rebuild a table.
var errRebuild = errors.New("sqlite: the schema change would rebuild a table, which deletes the rows of the tables that refer to it; make it by hand (see docs/schema.md, \"Upgrades that lose nothing\")")

func (c *noRebuild) refuse(query string) error {
	if dropTable.MatchString(query) {
		return fmt.Errorf("%w: %s", errRebuild, strings.TrimSpace(query))
	}
	return nil
}

// PrepareContext prepares query, unless it drops a table.
func (c *noRebuild) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	if err := c.refuse(query); err != nil {
		return nil, err
	}
	return c.ConnPool.PrepareContext(ctx, query)
}

// ExecContext runs query, unless it drops a table.
func (c *noRebuild) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := c.refuse(query); err != nil {
		return nil, err
	}
	return c.ConnPool.ExecContext(ctx, query, args...)
}

// Commit commits the transaction. With Rollback, it lets GORM see the
// connection is a transaction, so that the migrator's own transactions
// become savepoints in it.
func (c *noRebuild) Commit() error { return c.ConnPool.(gorm.TxCommitter).Commit() }

// Rollback rolls the transaction back.
func (c *noRebuild) Rollback() error { return c.ConnPool.(gorm.TxCommitter).Rollback() }
