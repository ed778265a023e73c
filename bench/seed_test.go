package bench

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
)

// seeder inserts, outside the timed region, the rows a benchmark's calls
// start from: server-side, in one statement per table, so that preparing
// b.N rows costs far less than timing them would. Any failure fails b.
type seeder struct {
	b   testing.TB
	ctx context.Context
	db  backend
}

// seedStatements are the seeder's INSERTs on one database, each returning
// the IDs of the rows it inserted. runs takes the number of rows, their
// status and how many memories each holds; the others the number of rows,
// their feature run and their status.
type seedStatements struct {
	runs, phases, invocations, sandboxes, ctaEvents string
}

// postgresSeeds are the seeder's statements on PostgreSQL. Each run holds
// the memories "stored 1", "stored 2", ...
var postgresSeeds = seedStatements{
	runs: `
INSERT INTO feature_runs (id, phase, status, memories, created_at, updated_at)
SELECT gen_random_uuid(), 'plan', $2::text,
	(SELECT COALESCE(jsonb_agg('stored ' || g ORDER BY g), '[]') FROM generate_series(1, $3::int) AS g),
	now(), now()
FROM generate_series(1, $1::int)
RETURNING id`,
	phases: `
INSERT INTO phase_results (id, feature_run_id, phase, status, created_at, updated_at)
SELECT gen_random_uuid(), $2::uuid, 'plan', $3::text, now(), now() FROM generate_series(1, $1::int)
RETURNING id`,
	invocations: `
INSERT INTO agent_invocations (id, feature_run_id, agent, model, status, input_tokens, output_tokens, cost_nano_usd, created_at, updated_at)
SELECT gen_random_uuid(), $2::uuid, 'coder', 'model', $3::text, 0, 0, 0, now(), now() FROM generate_series(1, $1::int)
RETURNING id`,
	sandboxes: `
INSERT INTO sandboxes (id, feature_run_id, status, provider, created_at, updated_at)
SELECT 'sb-' || gen_random_uuid(), $2::uuid, $3::text, 'e2b', now(), now() FROM generate_series(1, $1::int)
RETURNING id`,
	ctaEvents: `
INSERT INTO cta_events (id, feature_run_id, kind, status, created_at, updated_at)
SELECT 'cta-' || gen_random_uuid(), $2::uuid, 'approval', $3::text, now(), now() FROM generate_series(1, $1::int)
RETURNING id`,
}

// runs inserts n feature runs in status and phase "plan", each holding
// stored memories ("stored 1", "stored 2", ...), and returns their IDs.
func (s seeder) runs(n int, status models.RunStatus, stored int) []uuid.UUID {
	return s.uuids(s.db.seedStatements().runs, n, status, stored)
}

// run inserts one running feature run, the parent of other rows.
func (s seeder) run() uuid.UUID { return s.runs(1, models.RunRunning, 0)[0] }

// phases inserts n phase results of run in status.
func (s seeder) phases(run uuid.UUID, n int, status models.PhaseStatus) []uuid.UUID {
	return s.uuids(s.db.seedStatements().phases, n, run, status)
}

// invocations inserts n agent invocations of run in status.
func (s seeder) invocations(run uuid.UUID, n int, status models.InvocationStatus) []uuid.UUID {
	return s.uuids(s.db.seedStatements().invocations, n, run, status)
}

// sandboxes inserts n sandboxes of run in status.
func (s seeder) sandboxes(run uuid.UUID, n int, status models.SandboxStatus) []string {
	return s.ids(s.db.seedStatements().sandboxes, n, run, status)
}

// ctaEvents inserts n CTA events of run in status.
func (s seeder) ctaEvents(run uuid.UUID, n int, status models.CTAStatus) []string {
	return s.ids(s.db.seedStatements().ctaEvents, n, run, status)
}

// uuids runs query and returns the UUIDs it inserted.
func (s seeder) uuids(query string, args ...any) []uuid.UUID {
	s.b.Helper()
	texts := s.ids(query, args...)
	ids := make([]uuid.UUID, len(texts))
	for i, t := range texts {
		var err error
		if ids[i], err = uuid.Parse(t); err != nil {
			s.b.Fatalf("seed: %v", err)
		}
	}
	return ids
}

// ids runs query and returns the IDs it inserted. In a benchmark it then
// analyzes the database (see backend.analyze); the tests, which compare
// what the sides write and not how fast, skip that, which would make their
// many small seeds take seconds.
func (s seeder) ids(query string, args ...any) []string {
	s.b.Helper()
	ids, err := s.db.ids(s.ctx, query, args...)
	if _, timed := s.b.(*testing.B); timed && err == nil {
		err = s.db.analyze(s.ctx)
	}
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
