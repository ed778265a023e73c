// Package mariadb is MariaDB as the package uses it, through
// gorm.io/driver/mysql and go-sql-driver/mysql: its SQL, its errors, its
// migration and its test databases.
//
// MariaDB has no UPDATE … RETURNING and no UPDATE inside a WITH, so a
// guarded update runs as on SQLite: the UPDATE, then, when it changed
// nothing, a read of its outcome code. The read locks the row in share
// mode, so that it sees the row as last committed (as the UPDATE did),
// never an older snapshot of a REPEATABLE READ transaction the caller
// runs. go-sql-driver/mysql numbers no vars, so each statement lists the
// vars its placeholders bind.
//
// A statement's rows affected are the rows it changed, by default, or the
// rows it matched with clientFoundRows=true. The repository works with
// either: every guard excludes the rows already as asked, so a row an
// update matches is a row it changes, and creates ignore the count.
package mariadb

import (
	"database/sql"
	"errors"
	"regexp"
	"strconv"

	"github.com/go-sql-driver/mysql"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dialect"
)

// Dialect is MariaDB.
var Dialect = dialect.Dialect{
	Name:     "mariadb",
	GORMName: "mysql",
	// The UPDATE finds its row by the primary key alone, and tests the
	// guard IS TRUE, which selects the rows WHERE would (not those where
	// the guard is false or NULL) and which MariaDB's range optimizer does
	// not look into. Otherwise, at every
	// execution, it weighs a range of each index whose column the guard
	// names, and a union of them for each OR, for a statement that can only
	// read the one row its key finds. A fenced move's guard names indexed
	// columns in several conditions, and that weighing made it cost a
	// tenth more than the unfenced move.
	Guard: func(g *dialect.GuardedUpdate) *dialect.Guard {
		return &dialect.Guard{
			Table:     g.Table,
			Statement: *dialect.Positional("UPDATE " + g.Table + " SET " + g.Set + " WHERE id = " + g.ID() + " AND (" + g.Where + ") IS TRUE"),
			Probe:     dialect.Positional("SELECT " + g.Code() + " FROM " + g.Table + " WHERE id = " + g.ID() + " LOCK IN SHARE MODE"),
		}
	},
	// InnoDB's REPEATABLE READ reads every plain SELECT of a transaction
	// from the snapshot its first read took; the level is named, as the
	// server's default may be another.
	Snapshot: &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
	// Memories compare as the text of each element, which JSON_TABLE
	// returns as written, and in utf8mb4_bin: the repository writes only
	// canonical JSON, in which JSON-equal values have equal text. New
	// values are concatenated to the stored text, which is not rebuilt.
	// GROUP_CONCAT stops at group_concat_max_len (1 MiB by default), so
	// the statement raises it for itself alone, to max_allowed_packet: no
	// string a statement builds can be longer, and both variables have
	// the same maximum (1 GiB), where a larger constant fails in a strict
	// sql_mode (STRICT_ALL_TABLES, TRADITIONAL: error 1231) instead of
	// being cut down to it. The UPDATE holds the row's lock from its read
	// of the memories to its write, so it is atomic.
	AppendMemories: &dialect.Guard{
		Table: "feature_runs",
		Statement: *dialect.Positional(`SET STATEMENT group_concat_max_len = @@max_allowed_packet FOR
UPDATE feature_runs AS r
SET r.memories = CONCAT(
		IF(r.memories = '[]', '[', CONCAT(LEFT(r.memories, CHAR_LENGTH(r.memories) - 1), ',')),
		(SELECT GROUP_CONCAT(n.v ORDER BY n.pos SEPARATOR ',') FROM ` + newMemories + ` WHERE ` + absent + `),
		']'),
	r.updated_at = $2
WHERE r.id = $3 AND r.status = 'running' AND EXISTS (SELECT 1 FROM ` + newMemories + ` WHERE ` + absent + `)`),
		Probe: dialect.Positional(`SELECT CASE
	WHEN NOT EXISTS (SELECT 1 FROM ` + newMemories + ` WHERE ` + absent + `) THEN ` + strconv.Itoa(dialect.CodeDone) + `
	WHEN r.status = 'running' THEN ` + strconv.Itoa(dialect.CodeRetry) + `
	ELSE ` + dialect.StatusCode("feature_runs", "r.status") + ` END
FROM feature_runs AS r WHERE r.id = $3 LOCK IN SHARE MODE`),
	},
	// The sweep, a transaction of a claim and an update in REPEATABLE
	// READ. Backlog, a plain read outside it, counts the due events as
	// last committed; none ends the sweep, which takes effect there.
	//
	// When more are due than the limit, Skip locks the first $3 that no
	// other call holds (SKIP LOCKED), so that sweepers draining a backlog
	// do not queue behind each other. A locking read sees each row as
	// last committed, and a locked row stays so until the commit, where
	// Update times out all of them at once: that is the sweep's
	// linearization point, and as it returns its limit, the events it
	// passed over do not matter there. A claim of fewer than $3 may have
	// passed over an event still pending when the sweep returns: it is
	// rolled back and made again with Wait.
	//
	// Otherwise Wait locks the due events in the order of the index
	// idx_cta_events_pending_expiry (status, expires_at, then the primary
	// key), waiting for those other calls hold, and after a wait reads the
	// event as last committed, skipping it if no longer pending.
	// REPEATABLE READ locks the gaps of the range it reads, so no event
	// enters it before the commit. At the commit, then, every due event is
	// either returned and timed out, or was answered or timed out by the
	// call that held it, a final status. Sweepers that wait lock in one
	// order, and sweepers that skip never wait; a deadlock InnoDB still
	// finds (a sweeper's gap lock against an answer's index update) rolls
	// the transaction back, and it is sent again.
	ExpireCTAEvents: dialect.Expire{
		Backlog: dialect.Positional(`SELECT COUNT(*) FROM (SELECT 1 FROM cta_events
WHERE status = 'pending' AND expires_at <= $1
LIMIT $5) AS due`),
		Skip: dialect.Positional(`SELECT id FROM cta_events
WHERE status = 'pending' AND expires_at <= $1
ORDER BY expires_at, id
LIMIT $3
FOR UPDATE SKIP LOCKED`),
		Wait: dialect.Positional(`SELECT id FROM cta_events
WHERE status = 'pending' AND expires_at <= $1
ORDER BY expires_at, id
LIMIT $3
FOR UPDATE`),
		// The claimed IDs come as one JSON array, so that the statement
		// has one text whatever their number; the join reads each event
		// by its primary key, locking no other row.
		Update: dialect.Positional(`UPDATE JSON_TABLE($6, '$[*]' COLUMNS (id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin PATH '$')) AS j
STRAIGHT_JOIN cta_events AS c FORCE INDEX (PRIMARY) ON c.id = j.id
SET c.status = 'timed_out', c.resolved_at = $1, c.updated_at = $2
WHERE c.status = 'pending'`),
		TxOptions: &sql.TxOptions{Isolation: sql.LevelRepeatableRead},
	},
	Purge: purge,
	ForeignKey: func(_ *gorm.DB, err error) (string, bool) {
		var myErr *mysql.MySQLError
		if !errors.As(err, &myErr) || (myErr.Number != 1452 && myErr.Number != 1216) {
			return "", false
		}
		if m := constraintName.FindStringSubmatch(myErr.Message); m != nil {
			return m[1], true
		}
		return "", true
	},
	// A deadlock rolls back the statement InnoDB chose, which a single
	// statement outside a transaction may send again. Racing creates of
	// one row, and creates racing updates of their parent, meet in
	// InnoDB's row and gap locks.
	Retry: func(err error) bool {
		var myErr *mysql.MySQLError
		return errors.As(err, &myErr) && myErr.Number == 1213
	},
	// At a context's end go-sql-driver/mysql closes the connection and
	// leaves its statement running on the server, which still commits it
	// once the lock it waits for is free, long after the caller was told
	// it failed. KILL QUERY, sent on another connection, stops it: the
	// statement's own connection then answers with error 1317 (query
	// interrupted), or with its success if it committed first. The
	// connection's ID is read once per connection.
	//
	// A kill that lands while the statement opens a table with triggers
	// leaves the table's trigger half-read in the table cache: from then
	// on every statement that writes the table, from any connection,
	// fails with error 1064 ("Unknown trigger has an error in its body")
	// until the table leaves the cache (FLUSH TABLES), in MariaDB 10.11
	// at least. So a statement is killed only once past the stages that
	// open tables, and by its query ID, which cannot reach the
	// connection's next statement (1957, unknown query ID, once it
	// ended). Until then the request is sent again (see
	// repository.write); opening tables takes microseconds, except
	// while waiting for a table's metadata lock, which the kill ends as
	// it comes before any table is read.
	Stop: &dialect.Stop{
		ConnID: "SELECT CONNECTION_ID()",
		Running: `SELECT QUERY_ID FROM information_schema.PROCESSLIST WHERE ID = ? AND COMMAND IN ('Query', 'Execute', 'Prepare')
			AND STATE NOT IN ('', 'starting', 'Reset for next command', 'checking permissions', 'init', 'Opening tables')`,
		Kill: "KILL QUERY ID ?",
		Ended: func(err error) bool {
			var myErr *mysql.MySQLError
			return errors.As(err, &myErr) && myErr.Number == 1957
		},
	},
	// A run's memories are built as one string, which stops at
	// max_allowed_packet: in strict mode, which migrate requires, the
	// statement fails (ER_WARN_ALLOWED_PACKET_OVERFLOWED) and changes
	// nothing.
	TooLarge: func(err error) bool {
		var myErr *mysql.MySQLError
		return errors.As(err, &myErr) && myErr.Number == 1301
	},
	// The settings of a Repository's connections are read before its
	// first statement: those migrate refuses are refused there too, and
	// max_allowed_packet bounds every statement the Repository sends.
	Session:        session,
	PacketTooLarge: packetTooLarge,
	// Error 1461 (ER_MAX_PREPARED_STMT_COUNT_REACHED) comes from the
	// server's count of every connection's statements, not the
	// Repository's: under GORM's PrepareStmt each tenant's statements are
	// prepared once per connection, which reaches the limit at a few
	// hundred tenants (docs/tenants.md).
	PreparedLimit: func(err error) bool {
		var myErr *mysql.MySQLError
		return errors.As(err, &myErr) && myErr.Number == 1461
	},
	Migrate: migrate,
	Schemas: &dialect.Schemas{
		// A schema is a database, and these are the server's own.
		Reserved: func(name string) bool {
			switch name {
			case "mysql", "information_schema", "performance_schema", "sys":
				return true
			}
			return false
		},
		Drop: "DROP DATABASE IF EXISTS %s",
	},
}

// newMemories are the elements of the new memories $1, with their
// positions; absent is true of an element n.v not among the stored
// memories of the run r.
const (
	newMemories = `JSON_TABLE($1, '$[*]' COLUMNS (pos FOR ORDINALITY, v JSON PATH '$')) AS n`
	absent      = `n.v NOT IN (SELECT m.v FROM JSON_TABLE(r.memories, '$[*]' COLUMNS (v JSON PATH '$')) AS m)`
)

// constraintName finds the name of the foreign key in MariaDB's message
// for its violation.
var constraintName = regexp.MustCompile("CONSTRAINT `([^`]+)`")

// purge locks its runs with SKIP LOCKED, so that concurrent purgers take
// different runs and never wait for each other, in transactions at READ
// COMMITTED: there InnoDB takes no gap locks for its searches and frees at
// once the lock of a row it read but did not match, so a writer of another
// run waits at most for the statement that reads its row. But foreign key
// checks lock the gap beside each key they look up, in deletes too, and an
// insert of another run's child may need that gap: each delete runs in a
// transaction of its own (OneDelete), so that such an insert waits for one
// statement at most. The lock on a run conflicts with the shared lock a
// child's foreign key check takes, so no child of a locked run is created
// while its rows are deleted. A single-table DELETE takes a LIMIT, and
// since MariaDB 10.3 a subquery on its own table.
var purge = dialect.Purge{
	Claim: dialect.Positional(`SELECT r.id FROM feature_runs AS r
WHERE ` + dialect.Purgeable("r", "$1") + `
ORDER BY r.status, r.created_at, r.id
LIMIT $2
FOR UPDATE SKIP LOCKED`),
	Lock: dialect.Positional(`SELECT id FROM feature_runs WHERE id IN (` + dialect.PurgeIDs(1) + `) FOR UPDATE SKIP LOCKED`),
	Children: []*dialect.Statement{
		dialect.Positional(`DELETE FROM agent_invocations WHERE feature_run_id IN (` + dialect.PurgeIDs(2) + `)
AND NOT EXISTS (SELECT 1 FROM agent_invocations AS c WHERE c.parent_invocation_id = agent_invocations.id)
LIMIT $1`),
		dialect.Positional(`DELETE FROM phase_results WHERE feature_run_id IN (` + dialect.PurgeIDs(2) + `) LIMIT $1`),
		dialect.Positional(`DELETE FROM sandboxes WHERE feature_run_id IN (` + dialect.PurgeIDs(2) + `) AND status IN ('stopped', 'failed') LIMIT $1`),
		dialect.Positional(`DELETE FROM cta_events WHERE feature_run_id IN (` + dialect.PurgeIDs(2) + `) AND status <> 'pending' LIMIT $1`),
	},
	Runs:      dialect.Positional(`DELETE FROM feature_runs WHERE id IN (` + dialect.PurgeIDs(2) + `) AND ` + dialect.Purgeable("feature_runs", "$1")),
	OneDelete: true,
	TxOptions: &sql.TxOptions{Isolation: sql.LevelReadCommitted},
}
