package repository

import "database/sql"

// postgres compares memories as jsonb, whose equality ignores key order and
// whitespace. Under concurrent appends the row lock serialises the UPDATEs,
// and PostgreSQL re-evaluates the SET and WHERE of a waiting one against the
// row its predecessor committed, so no append is lost. That re-evaluation
// (EvalPlanQual) keeps the rows a join first matched, so the WHERE must not
// be a semi-join with the new values, which is why it counts them in a
// scalar subquery rather than testing EXISTS.
var postgres = dialect{
	dollarParams: true,
	snapshot:     &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
	appendMemories: `
WITH new AS (
	SELECT v, o FROM jsonb_array_elements(CAST($1 AS jsonb)) WITH ORDINALITY AS t(v, o)
)
UPDATE feature_runs AS r
SET memories = r.memories || (
		SELECT jsonb_agg(n.v ORDER BY n.o) FROM new n
		WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(r.memories) AS m(v) WHERE m.v = n.v)
	),
	updated_at = $3
WHERE r.id = $2 AND r.status = 'running' AND (
	SELECT count(*) FROM new n
	WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(r.memories) AS m(v) WHERE m.v = n.v)
) > 0`,
	memoriesState: `
SELECT r.status, (
	SELECT count(*) FROM jsonb_array_elements(CAST(@new AS jsonb)) AS n(v)
	WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(r.memories) AS m(v) WHERE m.v = n.v)
) AS missing
FROM feature_runs AS r WHERE r.id = @id`,
	// The claim is a CTE because PostgreSQL runs a CTE exactly once, while
	// an IN (subquery … LIMIT) may be re-run and claim more than @limit.
	expireCTAEvents: `
WITH due AS (
	SELECT id FROM cta_events
	WHERE status = 'pending' AND expires_at <= @now
	ORDER BY expires_at, id
	LIMIT @limit
	FOR UPDATE SKIP LOCKED
)
UPDATE cta_events AS c SET status = 'timed_out', resolved_at = @now, updated_at = @updated
FROM due WHERE c.id = due.id AND c.status = 'pending'
RETURNING c.id`,
}
