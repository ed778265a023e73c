// Package postgres is PostgreSQL as the package uses it, through
// gorm.io/driver/postgres and pgx: its SQL, its errors, its migration and
// its test databases.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dialect"
)

// Dialect is PostgreSQL.
//
// It runs a guarded update and the read of its outcome as one statement:
// the UPDATE in a CTE, and a SELECT of the row beside it. Both see the
// snapshot the statement started with, so the read sees the row as it was
// then. When a concurrent write changed the row after that, the UPDATE
// waits for it and re-checks its guard against the row that write
// committed (EvalPlanQual); if the guard no longer matches, the older
// state read still satisfies it, which is the outcome CodeRetry. A replay
// is thus one round trip that writes nothing.
//
// The SELECT returns as many rows, without columns, as the outcome code
// (none when the row does not exist), and PostgreSQL reports that count in
// its command tag, which database/sql's Exec returns as the rows affected.
// The outcome thus travels without a result set, whose reading costs
// database/sql a goroutine per query on a cancellable context and made a
// transition a fifth slower than the statement sent by hand.
var Dialect = dialect.Dialect{
	Name:     "postgres",
	GORMName: "postgres",
	Guard: func(g *dialect.GuardedUpdate) *dialect.Guard {
		return &dialect.Guard{
			Table: g.Table,
			Statement: dialect.Statement{SQL: "WITH changed AS (" + g.Update() + " RETURNING 1) SELECT FROM " + g.Table +
				", generate_series(1, CASE WHEN EXISTS (SELECT FROM changed) THEN " + strconv.Itoa(dialect.CodeDone) + " ELSE " + g.Code() + " END)" +
				" WHERE id = " + g.ID()},
		}
	},
	Snapshot: &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
	// Memories compare as jsonb, whose equality ignores key order,
	// whitespace and the form of numbers. A scalar is present exactly when
	// the array contains it (@>), which jsonb checks in C without
	// unpacking the array; an object or array may be contained in a
	// different element, so only then is the array searched for an equal
	// element. Whether every value is present, a replay, is one @> of the
	// whole new array, plus that search for objects and arrays. The
	// UPDATE's guard tests it as an expression of the row, never a join
	// with the new values: EvalPlanQual re-checks a waiting UPDATE against
	// the row its predecessor committed but keeps the rows a join first
	// matched, which could skip a value still missing.
	AppendMemories: &dialect.Guard{
		Table: "feature_runs",
		Statement: dialect.Statement{SQL: `
WITH new AS (
	SELECT v, o FROM jsonb_array_elements(CAST($1 AS jsonb)) WITH ORDINALITY AS t(v, o)
), changed AS (
	UPDATE feature_runs AS r
	SET memories = r.memories || (SELECT jsonb_agg(n.v ORDER BY n.o) FROM new AS n WHERE ` + absent + `),
		updated_at = $2
	WHERE r.id = $3 AND r.status = 'running' AND NOT ` + allPresent + `
	RETURNING 1
)
SELECT FROM feature_runs AS r, generate_series(1, CASE
	WHEN EXISTS (SELECT FROM changed) OR ` + allPresent + ` THEN ` + strconv.Itoa(dialect.CodeDone) + `
	WHEN r.status = 'running' THEN ` + strconv.Itoa(dialect.CodeRetry) + `
	ELSE ` + dialect.StatusCode("feature_runs", "r.status") + ` END)
WHERE r.id = $3`},
	},
	// The sweep, in one statement. The claims are CTEs because
	// PostgreSQL runs a CTE exactly once, while an IN (subquery … LIMIT)
	// may be re-run and claim more than the limit; the update finds the
	// claimed events by primary key, from an array of their IDs. backlog
	// tells, from the statement's snapshot and the index on pending
	// deadlines, whether more events are due than the limit.
	//
	// If so, claimed locks the first $3 due events that no other call
	// holds (SKIP LOCKED), so that sweepers draining a backlog do not
	// queue behind each other, and when it has $3 of them, the statement
	// times them out: each was due and pending when it was locked, and a
	// locked row stays so until the commit, where all of them time out at
	// once. That is the sweep's linearization point. The events it passed
	// over do not matter there: a sweep that returns its limit may take
	// any limit of the due events. If it claimed fewer, it passed over an
	// event that may still be pending when it returns; so it changes
	// nothing and returns one NULL ID, and is sent again with $4 true.
	//
	// Otherwise (or sent again) waited locks the due events in the order
	// of their deadlines and IDs, waiting for those other calls hold;
	// after a wait PostgreSQL reads the event's last committed version
	// and locks it only if it is still due and pending. At the commit,
	// then, every due event the snapshot had is either returned and timed
	// out, or was found answered or timed out by the call that held it, a
	// final status. Sweepers that wait lock in one order and sweepers that
	// skip never wait, so no two sweepers deadlock; an answer holds one
	// row.
	//
	// An event created while the statement runs is not in its snapshot:
	// for that event the sweep takes effect before its create, which the
	// event's own calls always allow, but the sweep then has no one moment
	// for all events. Closing that needs creates to wait for the sweep (a
	// table lock), which would stall every CTA write behind any long
	// transaction that holds one.
	ExpireCTAEvents: dialect.Expire{Sweep: &dialect.Statement{SQL: `
WITH backlog AS (
	SELECT count(*) > $3 AND NOT $4 AS skip
	FROM (SELECT FROM cta_events WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT $3 + 1) AS due
), claimed AS (
	SELECT id FROM cta_events
	WHERE status = 'pending' AND expires_at <= $1 AND (SELECT skip FROM backlog)
	ORDER BY expires_at, id
	LIMIT $3
	FOR UPDATE SKIP LOCKED
), waited AS (
	SELECT id FROM cta_events
	WHERE status = 'pending' AND expires_at <= $1 AND NOT (SELECT skip FROM backlog)
	ORDER BY expires_at, id
	LIMIT $3
	FOR UPDATE
), expired AS (
	UPDATE cta_events AS c SET status = 'timed_out', resolved_at = $1, updated_at = $2
	WHERE c.id = ANY (ARRAY(
		SELECT id FROM claimed WHERE (SELECT count(*) FROM claimed) = $3
		UNION ALL
		SELECT id FROM waited
	)) AND c.status = 'pending'
	RETURNING c.id
)
SELECT id FROM expired
UNION ALL
SELECT NULL WHERE (SELECT skip FROM backlog) AND (SELECT count(*) FROM claimed) < $3`, Vars: []int{0, 1, 2, 3}}},
	Purge: purge,
	// At a context's end pgx, by default, breaks the connection and
	// leaves its statement running on the server, which still commits it
	// once the lock it waits for is free: a cancel request, sent on a
	// connection of its own as PostgreSQL's protocol has it, stops the
	// statement instead, and the statement's own connection answers with
	// SQLSTATE 57014, or with its success if it committed first.
	//
	// A write on a connection pinned for that runs its statement on pgx's
	// connection directly, as pgx's driver would.
	Stop: &dialect.Stop{
		Conn: func(conn any) (dialect.Canceler, bool) {
			c, ok := conn.(*stdlib.Conn)
			if !ok {
				return nil, false
			}
			return canceler{c.Conn().PgConn()}, true
		},
		Exec: func(ctx context.Context, conn any, query string, args []any) (int64, error) {
			tag, err := conn.(*stdlib.Conn).Conn().Exec(ctx, query, args...)
			return tag.RowsAffected(), err
		},
	},
	// PostgreSQL names the violated constraint, which tells which parent
	// is missing without another statement: after an error, any further
	// statement in the transaction would fail as aborted.
	ForeignKey: func(_ *gorm.DB, err error) (string, bool) {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23503" {
			if pgErr.ConstraintName != "" {
				return pgErr.ConstraintName, true
			}
			return shardConstraint(pgErr.Message), true
		}
		return "", false
	},
	AbortsTransaction: true,
	Retry:             essentialConnectionFailed,
	Migrate:           migrate,
	Schemas: &dialect.Schemas{
		// PostgreSQL refuses to create a schema named pg_…, and
		// information_schema is the catalog's.
		Reserved: func(name string) bool {
			return strings.HasPrefix(name, "pg_") || name == "information_schema"
		},
		Drop: "DROP SCHEMA IF EXISTS %s CASCADE",
	},
}

// absent is true when the new value n.v is not in the memories
// r.memories; allPresent when no new value is absent.
const absent = `(NOT r.memories @> jsonb_build_array(n.v) OR (jsonb_typeof(n.v) IN ('object', 'array') AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(r.memories) AS m(v) WHERE m.v = n.v)))`

const allPresent = `(r.memories @> CAST($1 AS jsonb) AND NOT EXISTS (SELECT FROM new AS n WHERE jsonb_typeof(n.v) IN ('object', 'array') AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(r.memories) AS m(v) WHERE m.v = n.v)))`

// citusForeignKey matches the message of a foreign-key violation on a
// Citus worker, which the coordinator relays with the message, detail and
// hint alone: the constraint's name reaches the client only in the
// message, as the shard's constraint (the name with "_<shard ID>" added),
// on the shard of the child table (its name with the same suffix).
var citusForeignKey = regexp.MustCompile(`^insert or update on table "[^"]*?(_[0-9]+)" violates foreign key constraint "([^"]+)"$`)

// shardConstraint returns the name of the foreign key whose violation on a
// Citus shard message reports, or "" for a message of another form, such
// as one a worker wrote in another language than English.
func shardConstraint(message string) string {
	m := citusForeignKey.FindStringSubmatch(message)
	if m == nil {
		return ""
	}
	name, ok := strings.CutSuffix(m[2], m[1])
	if !ok || name == "" {
		return ""
	}
	return name
}

// essentialConnectionFailed reports whether err is a Citus coordinator's
// refusal to commit a statement because the connection to a worker that
// the statement's transaction ran on failed (a worker backend killed, a
// worker restarted), as a coordinator connection holding a dead worker
// connection does for its next statement. Citus raises it before any node
// commits (its transaction on that worker is gone, and the others are
// rolled back or, prepared, never committed), and closes the failed
// connection at the end of the transaction: the statement changed nothing,
// and sent again it gets a new connection to the worker.
func essentialConnectionFailed(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "XX000" && strings.HasPrefix(pgErr.Message, "failure on connection marked as essential")
}

// purge locks its runs with SKIP LOCKED, so that concurrent purgers take
// different runs and never wait for each other, and a row lock is all a
// purge holds: no writer of another run waits for it. The lock on a run
// conflicts with the key-share lock a child's foreign key takes, so no
// child of a locked run is created while its rows are deleted. A capped
// delete finds its rows by primary key from an array built once, as the
// sweeper's update does: an IN (subquery … LIMIT) may be re-run and delete
// more than the cap.
var purge = dialect.Purge{
	Claim: &dialect.Statement{SQL: `SELECT r.id FROM feature_runs AS r
WHERE ` + dialect.Purgeable("r", "$1") + `
ORDER BY r.status, r.created_at, r.id
LIMIT $2
FOR UPDATE OF r SKIP LOCKED`},
	Lock: &dialect.Statement{SQL: `SELECT id FROM feature_runs WHERE id IN (` + dialect.PurgeIDs(1) + `) FOR UPDATE SKIP LOCKED`},
	Children: []*dialect.Statement{
		{SQL: `DELETE FROM agent_invocations WHERE id = ANY (ARRAY(
	SELECT a.id FROM agent_invocations AS a
	WHERE a.feature_run_id IN (` + dialect.PurgeIDs(2) + `)
	AND NOT EXISTS (SELECT 1 FROM agent_invocations AS c WHERE c.parent_invocation_id = a.id)
	LIMIT $1))`},
		{SQL: `DELETE FROM phase_results WHERE id = ANY (ARRAY(
	SELECT id FROM phase_results WHERE feature_run_id IN (` + dialect.PurgeIDs(2) + `) LIMIT $1))`},
		{SQL: `DELETE FROM sandboxes WHERE id = ANY (ARRAY(
	SELECT id FROM sandboxes WHERE feature_run_id IN (` + dialect.PurgeIDs(2) + `) AND status IN ('stopped', 'failed') LIMIT $1))`},
		{SQL: `DELETE FROM cta_events WHERE id = ANY (ARRAY(
	SELECT id FROM cta_events WHERE feature_run_id IN (` + dialect.PurgeIDs(2) + `) AND status <> 'pending' LIMIT $1))`},
	},
	Runs: &dialect.Statement{SQL: `DELETE FROM feature_runs AS r WHERE r.id IN (` + dialect.PurgeIDs(2) + `) AND ` + dialect.Purgeable("r", "$1")},
}

// canceler stops the statement of a pgx connection: by pgx's cancel
// request, which PostgreSQL answers on the statement's own connection,
// or, for a server that does not answer, by closing the connection's
// socket, which pgx's pending read then fails on.
type canceler struct{ conn *pgconn.PgConn }

// Cancel sends pgx's cancel request, on a connection of its own.
func (c canceler) Cancel(ctx context.Context) error { return c.conn.CancelRequest(ctx) }

// Break closes the connection's socket.
func (c canceler) Break() { _ = c.conn.Conn().Close() }
