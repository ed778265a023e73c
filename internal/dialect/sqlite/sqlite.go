// Package sqlite is SQLite as the package uses it: its SQL, its errors
// and its migration. It imports no SQLite driver: gorm.io/driver/sqlite's,
// mattn/go-sqlite3, is cgo, and every program links this package, so the
// program that opens SQLite links its driver itself, and one that does not
// builds without a C compiler. Its test databases are package sqlitetest's.
package sqlite

import (
	"errors"
	"strconv"
	"strings"
	"unicode"

	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dialect"
)

// Dialect is SQLite.
//
// It runs a guarded update, then, when it changed nothing, the read of its
// outcome code as a second statement: SQLite has no UPDATE inside a WITH.
// The read sees the row as committed at that moment; when a write in
// between made the guard match again, the code is CodeRetry. Vars are
// numbered ?1, ?2, … as PostgreSQL's $1, $2, ….
//
// Memories compare by a key per element: the JSON text of a string,
// object or array, which json_each gives as the element's value (strings
// re-quoted), and the literal name of true, false and null. The repository
// writes only canonical JSON, in which JSON-equal values have equal text.
// A number's value would be an SQL number, losing digits, so only numbers
// are looked up by path (->), a lookup that walks the array: appends stay
// linear in the stored memories unless most of them are numbers. The
// stored keys are collected once per statement, in a materialized CTE that
// NOT IN indexes, and new values are concatenated to the stored text,
// which is not rebuilt. SQLite runs one writer at a time, so the single
// UPDATE is atomic.
var Dialect = dialect.Dialect{
	Name:     "sqlite",
	GORMName: "sqlite",
	Guard: func(g *dialect.GuardedUpdate) *dialect.Guard {
		return &dialect.Guard{
			Table:     g.Table,
			Statement: dialect.Statement{SQL: dialect.Numbered(g.Update())},
			Probe:     &dialect.Statement{SQL: dialect.Numbered("SELECT " + g.Code() + " FROM " + g.Table + " WHERE id = " + g.ID())},
		}
	},
	// A plain SQLite transaction already reads one snapshot, and the
	// driver refuses isolation levels it does not name.
	Snapshot:      nil,
	NumbersAsBlob: true,
	AppendMemories: &dialect.Guard{
		Table: "feature_runs",
		Statement: dialect.Statement{SQL: `
WITH stored(k) AS MATERIALIZED (
	SELECT ` + key("m", "r.memories") + ` FROM feature_runs AS r, json_each(r.memories) AS m WHERE r.id = ?3
), new(pos, j) AS MATERIALIZED (
	SELECT n.key, ?1 -> n.fullkey FROM json_each(?1) AS n WHERE ` + key("n", "?1") + ` NOT IN (SELECT k FROM stored)
)
UPDATE feature_runs
SET memories = (
		SELECT CASE WHEN feature_runs.memories = '[]' THEN '[' ELSE substr(feature_runs.memories, 1, length(feature_runs.memories) - 1) || ',' END
			|| group_concat(j, ',' ORDER BY pos) || ']'
		FROM new
	),
	updated_at = ?2
WHERE id = ?3 AND status = 'running' AND EXISTS (SELECT 1 FROM new)`},
		Probe: &dialect.Statement{SQL: `
WITH stored(k) AS MATERIALIZED (
	SELECT ` + key("m", "r.memories") + ` FROM feature_runs AS r, json_each(r.memories) AS m WHERE r.id = ?2
)
SELECT CASE
	WHEN NOT EXISTS (SELECT 1 FROM json_each(?1) AS n WHERE ` + key("n", "?1") + ` NOT IN (SELECT k FROM stored)) THEN ` + strconv.Itoa(dialect.CodeDone) + `
	WHEN r.status = 'running' THEN ` + strconv.Itoa(dialect.CodeRetry) + `
	ELSE ` + dialect.StatusCode("feature_runs", "r.status") + ` END
FROM feature_runs AS r WHERE r.id = ?2`, Vars: []int{0, 2}},
	},
	// SQLite runs one write at a time: the sweep, one statement, sees
	// every event as last committed and no other call holds one.
	ExpireCTAEvents: dialect.Expire{Sweep: &dialect.Statement{SQL: `
UPDATE cta_events SET status = 'timed_out', resolved_at = ?1, updated_at = ?2
WHERE id IN (
	SELECT id FROM cta_events
	WHERE status = 'pending' AND expires_at <= ?1
	ORDER BY expires_at, id
	LIMIT ?3
)
RETURNING id`, Vars: []int{0, 1, 2}}},
	Purge: purge,
	// The error's own code comes first: gorm.io/driver/sqlite's
	// translator reads it by encoding the error as JSON, which finds no
	// code in an error that wraps the driver's. The translator stays for
	// drivers whose errors carry the code in a form extendedCode does not
	// read.
	ForeignKey: func(db *gorm.DB, err error) (string, bool) {
		if code, ok := extendedCode(err); ok && code == extendedForeignKey {
			return "", true
		}
		if t, ok := db.Dialector.(gorm.ErrorTranslator); ok && errors.Is(t.Translate(err), gorm.ErrForeignKeyViolated) {
			return "", true
		}
		return triggeredForeignKey(err)
	},
	Migrate: migrate,
}

// foreignKeyMessage starts the message of the error raised by the
// triggers that stand, on SQLite, for a foreign key SQLite cannot add to
// an existing table (see parentTriggers): SQLite's own message for a
// foreign key, then the name of the foreign key PostgreSQL has in the
// triggers' place. The error's code is that of any trigger's, so the
// message is what tells it.
const foreignKeyMessage = "FOREIGN KEY constraint failed: "

// triggeredForeignKey recognises the error of such a trigger and returns
// the name of the foreign key it stands for.
func triggeredForeignKey(err error) (string, bool) {
	msg := err.Error()
	i := strings.Index(msg, foreignKeyMessage)
	if i < 0 {
		return "", false
	}
	name := msg[i+len(foreignKeyMessage):]
	if end := strings.IndexFunc(name, func(c rune) bool { return c != '_' && !unicode.IsLetter(c) && !unicode.IsDigit(c) }); end >= 0 {
		name = name[:end]
	}
	return name, name != ""
}

// key is the comparison key of element e of the JSON array doc; see the
// comment on Dialect.
func key(e, doc string) string {
	return `CASE ` + e + `.type WHEN 'text' THEN json_quote(` + e + `.value) WHEN 'integer' THEN ` + doc + ` -> ` + e + `.fullkey WHEN 'real' THEN ` + doc + ` -> ` + e + `.fullkey WHEN 'null' THEN 'null' WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE ` + e + `.value END`
}

// purge locks nothing: SQLite runs one write at a time, each statement of
// a purge sees every row as last committed, and the delete of the runs,
// last, checks again that each may still be purged. Purgers running at
// once may claim the same runs; each run is still deleted by one of them.
var purge = dialect.Purge{
	Claim: &dialect.Statement{SQL: dialect.Numbered(`SELECT r.id FROM feature_runs AS r
WHERE ` + dialect.Purgeable("r", "$1") + `
ORDER BY r.status, r.created_at, r.id
LIMIT $2`)},
	Children: []*dialect.Statement{
		{SQL: dialect.Numbered(`DELETE FROM agent_invocations WHERE id IN (
	SELECT a.id FROM agent_invocations AS a
	WHERE a.feature_run_id IN (` + dialect.PurgeIDs(2) + `)
	AND NOT EXISTS (SELECT 1 FROM agent_invocations AS c WHERE c.parent_invocation_id = a.id)
	LIMIT $1)`)},
		{SQL: dialect.Numbered(`DELETE FROM phase_results WHERE id IN (
	SELECT id FROM phase_results WHERE feature_run_id IN (` + dialect.PurgeIDs(2) + `) LIMIT $1)`)},
		{SQL: dialect.Numbered(`DELETE FROM sandboxes WHERE id IN (
	SELECT id FROM sandboxes WHERE feature_run_id IN (` + dialect.PurgeIDs(2) + `) AND status IN ('stopped', 'failed') LIMIT $1)`)},
		{SQL: dialect.Numbered(`DELETE FROM cta_events WHERE id IN (
	SELECT id FROM cta_events WHERE feature_run_id IN (` + dialect.PurgeIDs(2) + `) AND status <> 'pending' LIMIT $1)`)},
	},
	Runs: &dialect.Statement{SQL: dialect.Numbered(`DELETE FROM feature_runs AS r WHERE r.id IN (` + dialect.PurgeIDs(2) + `) AND ` + dialect.Purgeable("r", "$1"))},
}
