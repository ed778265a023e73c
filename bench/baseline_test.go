package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpipeline/persistence/internal/canonjson"
	"github.com/agentpipeline/persistence/internal/workload"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// pgxStore is the baseline: the fifteen writes as a careful engineer would
// hand-write them over pgxpool. Each sends the statement the repository
// sends (GORM's INSERT for creates, the repository's single statements for
// the rest) and judges the row's state as it does; the outcomes are the repository's
// (nil, ErrNotFound or a *repository.TransitionError), so the workload can
// drive either.
//
// It does not validate its input, and it always binds NULL as a parameter
// where GORM inlines it. JSON arguments go through canonjson.Marshal, as in
// the repository, so both sides do the same client-side encoding.
type pgxStore struct {
	pool *pgxpool.Pool
}

var _ workload.Store = (*pgxStore)(nil)

// The statements, as the repository renders them on PostgreSQL: GORM's
// INSERT for creates, and for transitions the guarded UPDATE in a CTE beside
// the read of the row's state (see repository/dialect_postgres.go).
const (
	insertFeatureRunSQL      = `INSERT INTO "feature_runs" ("id","phase","status","memories","metadata","created_at","updated_at") VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING`
	insertSandboxSQL         = `INSERT INTO "sandboxes" ("id","feature_run_id","status","provider","metadata","created_at","updated_at") VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING`
	insertPhaseResultSQL     = `INSERT INTO "phase_results" ("id","feature_run_id","phase","status","created_at","updated_at") VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING`
	insertAgentInvocationSQL = `INSERT INTO "agent_invocations" ("id","feature_run_id","phase_result_id","parent_invocation_id","agent","model","provider","status","input","input_tokens","output_tokens","cache_read_input_tokens","cache_write_input_tokens","reasoning_output_tokens","cost_nano_usd","started_at","created_at","updated_at") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18) ON CONFLICT DO NOTHING`
	insertCTAEventSQL        = `INSERT INTO "cta_events" ("id","feature_run_id","kind","status","request_data","expires_at","created_at","updated_at") VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT DO NOTHING`

	updatePhaseSQL      = `WITH changed AS (UPDATE feature_runs SET phase = $1, updated_at = $2 WHERE status = 'running' AND phase <> $3 AND id = $4 RETURNING 1) SELECT (SELECT count(*) FROM changed), status, phase FROM feature_runs WHERE id = $4`
	finishRunSQL        = `WITH changed AS (UPDATE feature_runs SET status = $1, error = $2, completed_at = $3, updated_at = $4 WHERE status = 'running' AND id = $5 RETURNING 1) SELECT (SELECT count(*) FROM changed), status FROM feature_runs WHERE id = $5`
	finishPhaseSQL      = `WITH changed AS (UPDATE phase_results SET status = $1, output = $2, error = $3, finished_at = $4, updated_at = $5 WHERE status = 'running' AND id = $6 RETURNING 1) SELECT (SELECT count(*) FROM changed), status FROM phase_results WHERE id = $6`
	finishInvocationSQL = `WITH changed AS (UPDATE agent_invocations SET status = $1, steps = $2, tool_calls = $3, output = $4, input_tokens = $5, output_tokens = $6, ` +
		`cache_read_input_tokens = $7, cache_write_input_tokens = $8, reasoning_output_tokens = $9, cost_nano_usd = $10, ` +
		`response_model = $11, provider_request_id = $12, finish_reason = $13, time_to_first_token_micros = $14, ` +
		`error = $15, finished_at = $16, updated_at = $17 WHERE status = 'running' AND id = $18 RETURNING 1) SELECT (SELECT count(*) FROM changed), status FROM agent_invocations WHERE id = $18`
	resolveCTASQL = `WITH changed AS (UPDATE cta_events SET status = $1, response_data = $2, resolved_at = $3, updated_at = $4 WHERE status = 'pending' AND id = $5 RETURNING 1) SELECT (SELECT count(*) FROM changed), status FROM cta_events WHERE id = $5`

	absent            = `(NOT r.memories @> jsonb_build_array(n.v) OR (jsonb_typeof(n.v) IN ('object', 'array') AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(r.memories) AS m(v) WHERE m.v = n.v)))`
	appendMemoriesSQL = `
WITH new AS (
	SELECT v, o FROM jsonb_array_elements(CAST($1 AS jsonb)) WITH ORDINALITY AS t(v, o)
), changed AS (
	UPDATE feature_runs AS r
	SET memories = r.memories || (SELECT jsonb_agg(n.v ORDER BY n.o) FROM new AS n WHERE ` + absent + `),
		updated_at = $2
	WHERE r.id = $3 AND r.status = 'running' AND (SELECT count(*) FROM new AS n WHERE ` + absent + `) > 0
	RETURNING 1
)
SELECT c.n, r.status, CASE WHEN c.n = 0 THEN (SELECT count(*) FROM new AS n WHERE ` + absent + `) ELSE 0 END
FROM feature_runs AS r, (SELECT count(*) AS n FROM changed) AS c
WHERE r.id = $3`
)

// updateSandboxSQL is, for each status a sandbox can move to, the guarded
// UPDATE with the statuses it may move from written in, as the repository
// renders it.
var updateSandboxSQL = func() map[models.SandboxStatus]string {
	m := make(map[models.SandboxStatus]string, len(sandboxSources))
	for to, from := range sandboxSources {
		guard := "FALSE"
		if len(from) > 0 {
			in := make([]string, len(from))
			for i, s := range from {
				in[i] = "'" + string(s) + "'"
			}
			guard = "status IN (" + strings.Join(in, ", ") + ")"
		}
		m[to] = `WITH changed AS (UPDATE sandboxes SET status = $1, updated_at = $2, started_at = COALESCE(started_at, $3), stopped_at = COALESCE(stopped_at, $4) WHERE ` + guard + ` AND id = $5 RETURNING 1) SELECT (SELECT count(*) FROM changed), status FROM sandboxes WHERE id = $5`
	}
	return m
}()

var sandboxSources = map[models.SandboxStatus][]models.SandboxStatus{
	models.SandboxCreating: nil,
	models.SandboxRunning:  {models.SandboxCreating, models.SandboxPaused},
	models.SandboxPaused:   {models.SandboxRunning},
	models.SandboxStopped:  {models.SandboxCreating, models.SandboxRunning, models.SandboxPaused},
	models.SandboxFailed:   {models.SandboxCreating, models.SandboxRunning, models.SandboxPaused},
}

func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// jsonArg is the canonical JSON of v as a text argument, or NULL for nil.
func jsonArg(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	b, err := canonjson.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// arrayArg is jsonArg that stores a nil slice as [].
func arrayArg(vs []any) (any, error) {
	if vs == nil {
		return "[]", nil
	}
	return jsonArg(vs)
}

// setArg is the canonical JSON array of the distinct values of vs: the
// append statement compares new values only with stored ones, so
// duplicates within one call must go before it.
func setArg(vs []any) (string, error) {
	var buf bytes.Buffer
	buf.WriteByte('[')
	seen := make(map[string]struct{}, len(vs))
	for _, v := range vs {
		b, err := canonjson.Marshal(v)
		if err != nil {
			return "", err
		}
		if _, dup := seen[string(b)]; dup {
			continue
		}
		seen[string(b)] = struct{}{}
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		buf.Write(b)
	}
	buf.WriteByte(']')
	return buf.String(), nil
}

func orNewV7(id uuid.UUID) (uuid.UUID, error) {
	if id != uuid.Nil {
		return id, nil
	}
	return uuid.NewV7()
}

// exec runs one statement and returns the number of rows it changed.
func (s *pgxStore) exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := s.pool.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

// transition runs a guarded update with the read of the row's state in one
// statement, and judges the state as the repository does: a row the update
// changed is done; otherwise the state is a replay (to), a refusal, or,
// when the guard would match it (from), a row that changed under the
// statement, which then runs again.
func (s *pgxStore) transition(ctx context.Context, table, id, to string, from []string, query string, args ...any) error {
	for {
		var changed int64
		var status string
		err := s.pool.QueryRow(ctx, query, args...).Scan(&changed, &status)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return repository.ErrNotFound
		case err != nil:
			return err
		case changed > 0 || status == to:
			return nil
		case slices.Contains(from, status):
			continue
		}
		return &repository.TransitionError{Table: table, ID: id, From: status, To: to}
	}
}

// CreateFeatureRun implements workload.Store.
func (s *pgxStore) CreateFeatureRun(ctx context.Context, in repository.NewFeatureRun) (uuid.UUID, error) {
	memories, err := setArg(in.Memories)
	if err != nil {
		return uuid.Nil, err
	}
	metadata, err := jsonArg(in.Metadata)
	if err != nil {
		return uuid.Nil, err
	}
	id, err := orNewV7(in.ID)
	if err != nil {
		return uuid.Nil, err
	}
	t := now()
	_, err = s.exec(ctx, insertFeatureRunSQL, id.String(), in.Phase, string(models.RunRunning), memories, metadata, t, t)
	return id, err
}

// UpdateFeatureRunPhase implements workload.Store.
func (s *pgxStore) UpdateFeatureRunPhase(ctx context.Context, runID uuid.UUID, phase string) error {
	for {
		var changed int64
		var status, current string
		err := s.pool.QueryRow(ctx, updatePhaseSQL, phase, now(), phase, runID.String()).Scan(&changed, &status, &current)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return repository.ErrNotFound
		case err != nil:
			return err
		case changed > 0 || current == phase:
			return nil
		case status == string(models.RunRunning):
			continue
		}
		return &repository.TransitionError{Table: "feature_runs", ID: runID.String(), From: status, To: string(models.RunRunning), Detail: "phase " + phase}
	}
}

// UpdateFeatureRunMemories implements workload.Store.
func (s *pgxStore) UpdateFeatureRunMemories(ctx context.Context, runID uuid.UUID, memories []any) error {
	if len(memories) == 0 {
		return nil
	}
	values, err := setArg(memories)
	if err != nil {
		return err
	}
	for {
		var changed, missing int64
		var status string
		err := s.pool.QueryRow(ctx, appendMemoriesSQL, values, now(), runID.String()).Scan(&changed, &status, &missing)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return repository.ErrNotFound
		case err != nil:
			return err
		case changed > 0 || missing == 0:
			return nil
		case status == string(models.RunRunning):
			continue
		}
		return &repository.TransitionError{Table: "feature_runs", ID: runID.String(), From: status, To: string(models.RunRunning), Detail: strconv.FormatInt(missing, 10) + " new memories"}
	}
}

// CompleteFeatureRun implements workload.Store.
func (s *pgxStore) CompleteFeatureRun(ctx context.Context, runID uuid.UUID) error {
	return s.finishRun(ctx, runID, models.RunCompleted)
}

// FailFeatureRun implements workload.Store.
func (s *pgxStore) FailFeatureRun(ctx context.Context, runID uuid.UUID) error {
	return s.finishRun(ctx, runID, models.RunFailed)
}

func (s *pgxStore) finishRun(ctx context.Context, runID uuid.UUID, to models.RunStatus) error {
	t := now()
	return s.transition(ctx, "feature_runs", runID.String(), string(to), []string{string(models.RunRunning)}, finishRunSQL, string(to), nil, t, t, runID.String())
}

// CreateSandboxRecord implements workload.Store.
func (s *pgxStore) CreateSandboxRecord(ctx context.Context, in repository.NewSandbox) error {
	metadata, err := jsonArg(in.Metadata)
	if err != nil {
		return err
	}
	t := now()
	_, err = s.exec(ctx, insertSandboxSQL, in.ID, in.FeatureRunID.String(), string(models.SandboxCreating), in.Provider, metadata, t, t)
	return err
}

// UpdateSandboxStatus implements workload.Store.
func (s *pgxStore) UpdateSandboxStatus(ctx context.Context, sandboxID string, status models.SandboxStatus) error {
	sources, ok := sandboxSources[status]
	if !ok {
		return fmt.Errorf("unknown sandbox status %q", status)
	}
	t := now()
	var startedAt, stoppedAt any
	if status == models.SandboxRunning {
		startedAt = t
	}
	if status.Terminal() {
		stoppedAt = t
	}
	from := make([]string, len(sources))
	for i, src := range sources {
		from[i] = string(src)
	}
	return s.transition(ctx, "sandboxes", sandboxID, string(status), from, updateSandboxSQL[status], string(status), t, startedAt, stoppedAt, sandboxID)
}

// CreatePhaseResult implements workload.Store.
func (s *pgxStore) CreatePhaseResult(ctx context.Context, in repository.NewPhaseResult) (uuid.UUID, error) {
	id, err := orNewV7(in.ID)
	if err != nil {
		return uuid.Nil, err
	}
	t := now()
	_, err = s.exec(ctx, insertPhaseResultSQL, id.String(), in.FeatureRunID.String(), in.Phase, string(models.PhaseRunning), t, t)
	return id, err
}

// PassPhaseResult implements workload.Store.
func (s *pgxStore) PassPhaseResult(ctx context.Context, phaseResultID uuid.UUID, output any) error {
	out, err := jsonArg(output)
	if err != nil {
		return err
	}
	return s.finishPhase(ctx, phaseResultID, models.PhasePassed, out)
}

// FailPhaseResult implements workload.Store.
func (s *pgxStore) FailPhaseResult(ctx context.Context, phaseResultID uuid.UUID) error {
	return s.finishPhase(ctx, phaseResultID, models.PhaseFailed, nil)
}

func (s *pgxStore) finishPhase(ctx context.Context, id uuid.UUID, to models.PhaseStatus, output any) error {
	t := now()
	return s.transition(ctx, "phase_results", id.String(), string(to), []string{string(models.PhaseRunning)}, finishPhaseSQL, string(to), output, nil, t, t, id.String())
}

// CreateAgentInvocation implements workload.Store.
func (s *pgxStore) CreateAgentInvocation(ctx context.Context, in repository.NewAgentInvocation) (uuid.UUID, error) {
	input, err := jsonArg(in.Input)
	if err != nil {
		return uuid.Nil, err
	}
	id, err := orNewV7(in.ID)
	if err != nil {
		return uuid.Nil, err
	}
	t := now()
	var startedAt any
	if in.StartedAt != nil {
		startedAt = in.StartedAt.UTC().Truncate(time.Microsecond)
	}
	_, err = s.exec(ctx, insertAgentInvocationSQL, id.String(), in.FeatureRunID.String(), idArg(in.PhaseResultID), idArg(in.ParentInvocationID),
		in.Agent, in.Model, textArg(in.Provider), string(models.InvocationRunning), input, 0, 0, 0, 0, 0, 0, startedAt, t, t)
	return id, err
}

// idArg is an optional UUID as a text argument, or NULL.
func idArg(id *uuid.UUID) any {
	if id == nil {
		return nil
	}
	return id.String()
}

// textArg is an optional string as an argument: NULL when empty.
func textArg(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// CompleteAgentInvocation implements workload.Store.
func (s *pgxStore) CompleteAgentInvocation(ctx context.Context, invocationID uuid.UUID, res repository.InvocationResult) error {
	steps, err := arrayArg(res.Steps)
	if err != nil {
		return err
	}
	toolCalls, err := arrayArg(res.ToolCalls)
	if err != nil {
		return err
	}
	output, err := jsonArg(res.Output)
	if err != nil {
		return err
	}
	t := now()
	to := models.InvocationCompleted
	var ttft any
	if res.TimeToFirstTokenMicros != nil {
		ttft = *res.TimeToFirstTokenMicros
	}
	return s.transition(ctx, "agent_invocations", invocationID.String(), string(to), []string{string(models.InvocationRunning)}, finishInvocationSQL,
		string(to), steps, toolCalls, output, res.InputTokens, res.OutputTokens, res.CacheReadInputTokens, res.CacheWriteInputTokens, res.ReasoningOutputTokens,
		res.CostNanoUSD, textArg(res.ResponseModel), textArg(res.ProviderRequestID), textArg(res.FinishReason), ttft, nil, t, t, invocationID.String())
}

// CreateCTAEvent implements workload.Store.
func (s *pgxStore) CreateCTAEvent(ctx context.Context, in repository.NewCTAEvent) error {
	request, err := jsonArg(in.Request)
	if err != nil {
		return err
	}
	var expiresAt any
	if !in.ExpiresAt.IsZero() {
		expiresAt = in.ExpiresAt.UTC().Truncate(time.Microsecond)
	}
	t := now()
	_, err = s.exec(ctx, insertCTAEventSQL, in.ID, in.FeatureRunID.String(), in.Kind, string(models.CTAPending), request, expiresAt, t, t)
	return err
}

// CompleteCTAEvent implements workload.Store.
func (s *pgxStore) CompleteCTAEvent(ctx context.Context, ctaID string, responseData any) error {
	response, err := jsonArg(responseData)
	if err != nil {
		return err
	}
	return s.resolveCTA(ctx, ctaID, models.CTACompleted, response)
}

// TimeoutCTAEvent implements workload.Store.
func (s *pgxStore) TimeoutCTAEvent(ctx context.Context, ctaID string) error {
	return s.resolveCTA(ctx, ctaID, models.CTATimedOut, nil)
}

func (s *pgxStore) resolveCTA(ctx context.Context, id string, to models.CTAStatus, response any) error {
	t := now()
	return s.transition(ctx, "cta_events", id, string(to), []string{string(models.CTAPending)}, resolveCTASQL, string(to), response, t, t, id)
}
