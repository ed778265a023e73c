package bench

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

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

// The creates' statements, as the repository renders them on PostgreSQL
// (TestBaselineSendsRepositoryStatements checks them).
const (
	insertFeatureRunSQL      = `INSERT INTO "feature_runs" ("id","phase","status","memories","metadata","created_at","updated_at") VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING`
	insertSandboxSQL         = `INSERT INTO "sandboxes" ("id","feature_run_id","status","provider","metadata","created_at","updated_at") VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING`
	insertPhaseResultSQL     = `INSERT INTO "phase_results" ("id","feature_run_id","phase","status","created_at","updated_at") VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING`
	insertAgentInvocationSQL = `INSERT INTO "agent_invocations" ("id","feature_run_id","phase_result_id","parent_invocation_id","agent","model","provider","status","input","input_tokens","output_tokens","cache_read_input_tokens","cache_write_input_tokens","reasoning_output_tokens","cost_nano_usd","started_at","created_at","updated_at") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18) ON CONFLICT DO NOTHING`
	insertCTAEventSQL        = `INSERT INTO "cta_events" ("id","feature_run_id","kind","status","request_data","expires_at","created_at","updated_at") VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT DO NOTHING`
)

// The transitions' statements: each a guarded UPDATE and the read of its
// outcome, as one statement that reports the outcome code as its row count
// (see repository/dialect_postgres.go). They are taken from a repository
// on a DryRun session when the package loads, so the baseline sends the
// repository's text exactly.
var (
	updatePhaseSQL = transitionSQL(func(ctx context.Context, r *repository.Repository) error {
		return r.UpdateFeatureRunPhase(ctx, uuid.New(), "p")
	})
	appendMemoriesSQL = transitionSQL(func(ctx context.Context, r *repository.Repository) error {
		return r.UpdateFeatureRunMemories(ctx, uuid.New(), []any{1})
	})
	finishRunSQL = transitionSQL(func(ctx context.Context, r *repository.Repository) error {
		return r.CompleteFeatureRun(ctx, uuid.New())
	})
	finishPhaseSQL      = transitionSQL(func(ctx context.Context, r *repository.Repository) error { return r.FailPhaseResult(ctx, uuid.New()) })
	finishInvocationSQL = transitionSQL(func(ctx context.Context, r *repository.Repository) error {
		return r.CompleteAgentInvocation(ctx, uuid.New(), repository.InvocationResult{})
	})
	resolveCTASQL    = transitionSQL(func(ctx context.Context, r *repository.Repository) error { return r.TimeoutCTAEvent(ctx, "c") })
	updateSandboxSQL = func() map[models.SandboxStatus]string {
		m := make(map[models.SandboxStatus]string, len(sandboxSources))
		for to := range sandboxSources {
			m[to] = transitionSQL(func(ctx context.Context, r *repository.Repository) error { return r.UpdateSandboxStatus(ctx, "s", to) })
		}
		return m
	}()
)

// transitionSQL returns the one statement call sends through a repository
// on PostgreSQL, rendered on a DryRun session, which needs no server.
func transitionSQL(call func(context.Context, *repository.Repository) error) string {
	db, err := gorm.Open(postgres.New(postgres.Config{DSN: "host=localhost"}), &gorm.Config{DryRun: true, DisableAutomaticPing: true, Logger: logger.Discard})
	if err != nil {
		panic(err)
	}
	var sent []string
	if err := db.Callback().Raw().After("gorm:raw").Register("bench:capture", func(db *gorm.DB) { sent = append(sent, db.Statement.SQL.String()) }); err != nil {
		panic(err)
	}
	if err := call(context.Background(), repository.New(db)); err != nil || len(sent) != 1 {
		panic(fmt.Sprintf("render a transition: %v, %d statements", err, len(sent)))
	}
	return sent[0]
}

// statuses lists, per table, the statuses whose refusals the outcome code
// names, in the repository's order: code 3 is the first.
var statuses = map[string][]string{
	"feature_runs":      {"running", "completed", "failed"},
	"sandboxes":         {"creating", "running", "paused", "stopped", "failed"},
	"phase_results":     {"running", "passed", "failed"},
	"agent_invocations": {"running", "completed", "failed"},
	"cta_events":        {"pending", "completed", "timed_out"},
}

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

// transition runs a guarded update and decodes its outcome code as the
// repository does: no row is a missing row, 1 done, 2 a row that changed
// under the statement, which then runs again, and from 3 on a refusal
// naming the row's status.
func (s *pgxStore) transition(ctx context.Context, table, id, to, detail, query string, args ...any) error {
	for {
		tag, err := s.pool.Exec(ctx, query, args...)
		if err != nil {
			return err
		}
		switch code := tag.RowsAffected(); code {
		case 0:
			return repository.ErrNotFound
		case 1:
			return nil
		case 2:
			continue
		default:
			return &repository.TransitionError{Table: table, ID: id, From: statuses[table][code-3], To: to, Detail: detail}
		}
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
	return s.transition(ctx, "feature_runs", runID.String(), string(models.RunRunning), fmt.Sprintf("phase %q", phase), updatePhaseSQL, phase, now(), runID.String())
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
	return s.transition(ctx, "feature_runs", runID.String(), string(models.RunRunning), "new memories", appendMemoriesSQL, values, now(), runID.String())
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
	return s.transition(ctx, "feature_runs", runID.String(), string(to), "", finishRunSQL, string(to), nil, t, t, runID.String())
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
	if _, ok := sandboxSources[status]; !ok {
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
	return s.transition(ctx, "sandboxes", sandboxID, string(status), "", updateSandboxSQL[status], string(status), t, startedAt, stoppedAt, sandboxID)
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
	return s.transition(ctx, "phase_results", id.String(), string(to), "", finishPhaseSQL, string(to), output, nil, t, t, id.String())
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
	return s.transition(ctx, "agent_invocations", invocationID.String(), string(to), "", finishInvocationSQL,
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
	return s.transition(ctx, "cta_events", id, string(to), "", resolveCTASQL, string(to), response, t, t, id)
}
