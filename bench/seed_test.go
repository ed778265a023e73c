package bench

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/agentpipeline/persistence/models"
)

// seeder inserts, outside the timed region, the rows a benchmark's calls
// start from: server-side, in one statement per table, so that preparing
// b.N rows costs far less than timing them would. Any failure fails b.
type seeder struct {
	b   testing.TB
	ctx context.Context
	e   *env
}

// runs inserts n feature runs in status and phase "plan", each holding
// stored memories ("stored 1", "stored 2", ...), and returns their IDs.
func (s seeder) runs(n int, status models.RunStatus, stored int) []uuid.UUID {
	return s.uuidColumn(`
INSERT INTO feature_runs (id, phase, status, memories, created_at, updated_at)
SELECT gen_random_uuid(), 'plan', $2::text,
	(SELECT COALESCE(jsonb_agg('stored ' || g ORDER BY g), '[]') FROM generate_series(1, $3::int) AS g),
	now(), now()
FROM generate_series(1, $1::int)
RETURNING id`, n, status, stored)
}

// run inserts one running feature run, the parent of other rows.
func (s seeder) run() uuid.UUID { return s.runs(1, models.RunRunning, 0)[0] }

// phases inserts n phase results of run in status.
func (s seeder) phases(run uuid.UUID, n int, status models.PhaseStatus) []uuid.UUID {
	return s.uuidColumn(`
INSERT INTO phase_results (id, feature_run_id, phase, status, created_at, updated_at)
SELECT gen_random_uuid(), $2::uuid, 'plan', $3::text, now(), now() FROM generate_series(1, $1::int)
RETURNING id`, n, run, status)
}

// invocations inserts n agent invocations of run in status.
func (s seeder) invocations(run uuid.UUID, n int, status models.InvocationStatus) []uuid.UUID {
	return s.uuidColumn(`
INSERT INTO agent_invocations (id, feature_run_id, agent, model, status, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at)
SELECT gen_random_uuid(), $2::uuid, 'coder', 'model', $3::text, 0, 0, 0, now(), now() FROM generate_series(1, $1::int)
RETURNING id`, n, run, status)
}

// sandboxes inserts n sandboxes of run in status.
func (s seeder) sandboxes(run uuid.UUID, n int, status models.SandboxStatus) []string {
	return s.textColumn(`
INSERT INTO sandboxes (id, feature_run_id, status, provider, created_at, updated_at)
SELECT 'sb-' || gen_random_uuid(), $2::uuid, $3::text, 'e2b', now(), now() FROM generate_series(1, $1::int)
RETURNING id`, n, run, status)
}

// ctaEvents inserts n CTA events of run in status.
func (s seeder) ctaEvents(run uuid.UUID, n int, status models.CTAStatus) []string {
	return s.textColumn(`
INSERT INTO cta_events (id, feature_run_id, kind, status, created_at, updated_at)
SELECT 'cta-' || gen_random_uuid(), $2::uuid, 'approval', $3::text, now(), now() FROM generate_series(1, $1::int)
RETURNING id`, n, run, status)
}

// uuidColumn runs query and returns the UUIDs of its one column.
func (s seeder) uuidColumn(query string, args ...any) []uuid.UUID {
	s.b.Helper()
	rows, _ := s.e.pool.Query(s.ctx, query, args...)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		s.b.Fatalf("seed: %v", err)
	}
	return ids
}

// textColumn runs query and returns the strings of its one column.
func (s seeder) textColumn(query string, args ...any) []string {
	s.b.Helper()
	rows, _ := s.e.pool.Query(s.ctx, query, args...)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		s.b.Fatalf("seed: %v", err)
	}
	return ids
}

// newUUIDs returns n fresh random UUIDs.
func newUUIDs(n int) []uuid.UUID {
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = uuid.New()
	}
	return ids
}

// newStrings returns n fresh string IDs starting with prefix.
func newStrings(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = prefix + uuid.NewString()
	}
	return ids
}
