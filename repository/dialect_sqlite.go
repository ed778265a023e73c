package repository

import "strings"

// sqlite runs a guarded update, then, when it changed nothing, the probe
// as a second statement: SQLite has no UPDATE inside a WITH. The probe
// reads the row as committed at that moment; when a write in between made
// the guard match again, the judge answers errRetry.
//
// Memories compare by their text: the repository writes only canonical
// JSON, in which JSON-equal values are byte-equal, and the -> operator
// returns an element's JSON text as stored. SQLite runs one writer at a
// time, so the single UPDATE is atomic.
var sqlite = dialect{
	guard: func(g *guardedUpdate) *guard {
		return &guard{
			table:     g.table,
			extra:     strings.Contains(g.probe, ","),
			sql:       g.update,
			probe:     "SELECT " + g.probe + " FROM " + g.table + " WHERE id = ?",
			probeVars: []int{strings.Count(g.update, "?") - 1},
		}
	},
	// A plain SQLite transaction already reads one snapshot, and the
	// driver refuses isolation levels it does not name.
	snapshot:      nil,
	numbersAsBlob: true,
	appendMemories: &guard{
		table: "feature_runs",
		extra: true,
		sql: `
UPDATE feature_runs
SET memories = (
		SELECT json_group_array(json(e.j) ORDER BY e.src, e.pos) FROM (
			SELECT 0 AS src, m.key AS pos, feature_runs.memories -> m.fullkey AS j
			FROM json_each(feature_runs.memories) AS m
			UNION ALL
			SELECT 1, n.key, ?1 -> n.fullkey
			FROM json_each(?1) AS n
			WHERE NOT EXISTS (
				SELECT 1 FROM json_each(feature_runs.memories) AS m
				WHERE feature_runs.memories -> m.fullkey = ?1 -> n.fullkey
			)
		) AS e
	),
	updated_at = ?2
WHERE id = ?3 AND status = 'running' AND EXISTS (
	SELECT 1 FROM json_each(?1) AS n
	WHERE NOT EXISTS (
		SELECT 1 FROM json_each(feature_runs.memories) AS m
		WHERE feature_runs.memories -> m.fullkey = ?1 -> n.fullkey
	)
)`,
		probe: `
SELECT r.status, (
	SELECT count(*) FROM json_each(?1) AS n
	WHERE NOT EXISTS (
		SELECT 1 FROM json_each(r.memories) AS m WHERE r.memories -> m.fullkey = ?1 -> n.fullkey
	)
) AS missing
FROM feature_runs AS r WHERE r.id = ?2`,
		probeVars: []int{0, 2},
	},
	expireCTAEvents: `
UPDATE cta_events SET status = 'timed_out', resolved_at = ?1, updated_at = ?2
WHERE id IN (
	SELECT id FROM cta_events
	WHERE status = 'pending' AND expires_at <= ?1
	ORDER BY expires_at, id
	LIMIT ?3
)
RETURNING id`,
	foreignKey: translatedForeignKey,
}
