package repository

// sqlite compares memories by their text: the repository writes only
// canonical JSON, in which JSON-equal values are byte-equal, and the ->
// operator returns an element's JSON text as stored. SQLite runs one writer
// at a time, so the single UPDATE is atomic.
var sqlite = dialect{
	// A plain SQLite transaction already reads one snapshot, and the
	// driver refuses isolation levels it does not name.
	snapshot:      nil,
	numbersAsBlob: true,
	appendMemories: `
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
	updated_at = ?3
WHERE id = ?2 AND status = 'running' AND EXISTS (
	SELECT 1 FROM json_each(?1) AS n
	WHERE NOT EXISTS (
		SELECT 1 FROM json_each(feature_runs.memories) AS m
		WHERE feature_runs.memories -> m.fullkey = ?1 -> n.fullkey
	)
)`,
	memoriesState: `
SELECT r.status, (
	SELECT count(*) FROM json_each(@new) AS n
	WHERE NOT EXISTS (
		SELECT 1 FROM json_each(r.memories) AS m WHERE r.memories -> m.fullkey = @new -> n.fullkey
	)
) AS missing
FROM feature_runs AS r WHERE r.id = @id`,
	expireCTAEvents: `
UPDATE cta_events SET status = 'timed_out', resolved_at = @now, updated_at = @updated
WHERE id IN (
	SELECT id FROM cta_events
	WHERE status = 'pending' AND expires_at <= @now
	ORDER BY expires_at, id
	LIMIT @limit
)
RETURNING id`,
}
