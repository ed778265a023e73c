package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	gormmysql "gorm.io/driver/mysql"
	gormpostgres "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/internal/canonjson"
	"github.com/agentpipeline/persistence/internal/dialect"
	"github.com/agentpipeline/persistence/internal/dialect/postgres"
	"github.com/agentpipeline/persistence/internal/workload"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// baseline is the hand-written side: the fifteen writes as a careful
// engineer would write them over a database's own driver, without GORM.
// Each sends the statements the repository sends on that database (GORM's
// INSERT for creates, the repository's guarded updates for the rest) and
// judges the outcome as it does; the outcomes are the repository's (nil,
// ErrNotFound or a *repository.TransitionError), so the workload can drive
// either. What differs between databases is only conn and the SQL.
//
// It does not validate its input, and it always binds NULL as a parameter
// where GORM inlines it. JSON arguments go through canonjson.Marshal, as in
// the repository, so both sides do the same client-side encoding.
type baseline struct {
	conn conn
	sql  *statements
}

var _ workload.Store = (*baseline)(nil)

// conn sends the baseline's statements to one database.
type conn interface {
	// exec runs a statement and returns the number of rows it changed.
	exec(ctx context.Context, query string, args ...any) (int64, error)
	// code runs a probe, a query of one integer, and returns it, or 0
	// when the query returns no row.
	code(ctx context.Context, query string, args ...any) (int64, error)
}

// statements are the SQL of the repository's writes on one database: the
// creates' INSERTs and the transitions' guarded updates, each taking its
// vars in the repository's order (the row's ID last).
type statements struct {
	insertFeatureRun, insertSandbox, insertPhaseResult, insertAgentInvocation, insertCTAEvent string

	updatePhase, finishRun, finishPhase, finishInvocation, resolveCTA dialect.Guard
	updateSandbox                                                     map[models.SandboxStatus]*dialect.Guard
	appendMemories                                                    *dialect.Guard
}

// transition is a call through which a repository sends one of its
// guarded updates, and where statements hold it.
type transition struct {
	name  string
	call  func(context.Context, *repository.Repository) error
	guard func(*statements) *dialect.Guard
}

// transitions send each of the repository's guarded updates once: the
// sandbox's, one per status it may go to. The memory append is not among
// them: each Dialect holds its statement whole, as AppendMemories.
var transitions = append([]transition{
	{"UpdateFeatureRunPhase", func(ctx context.Context, r *repository.Repository) error {
		return r.UpdateFeatureRunPhase(ctx, uuid.New(), "p")
	}, func(s *statements) *dialect.Guard { return &s.updatePhase }},
	{"CompleteFeatureRun", func(ctx context.Context, r *repository.Repository) error {
		return r.CompleteFeatureRun(ctx, uuid.New())
	}, func(s *statements) *dialect.Guard { return &s.finishRun }},
	{"FailPhaseResult", func(ctx context.Context, r *repository.Repository) error {
		return r.FailPhaseResult(ctx, uuid.New())
	}, func(s *statements) *dialect.Guard { return &s.finishPhase }},
	{"CompleteAgentInvocation", func(ctx context.Context, r *repository.Repository) error {
		return r.CompleteAgentInvocation(ctx, uuid.New(), repository.InvocationResult{})
	}, func(s *statements) *dialect.Guard { return &s.finishInvocation }},
	{"TimeoutCTAEvent", func(ctx context.Context, r *repository.Repository) error {
		return r.TimeoutCTAEvent(ctx, "c")
	}, func(s *statements) *dialect.Guard { return &s.resolveCTA }},
}, sandboxTransitions()...)

func sandboxTransitions() []transition {
	var ts []transition
	for _, to := range slices.Sorted(maps.Keys(sandboxSources)) {
		ts = append(ts, transition{"UpdateSandboxStatus/" + string(to), func(ctx context.Context, r *repository.Repository) error {
			return r.UpdateSandboxStatus(ctx, "s", to)
		}, func(s *statements) *dialect.Guard { return s.updateSandbox[to] }})
	}
	return ts
}

// guardedUpdates are the repository's guarded updates, by transition,
// recovered when the package loads (see recoverGuard).
var guardedUpdates = func() map[string]*dialect.GuardedUpdate {
	m := make(map[string]*dialect.GuardedUpdate, len(transitions))
	for _, t := range transitions {
		m[t.name] = recoverGuard(t.call)
	}
	return m
}()

// statementsOn returns the statements of the writes on d: the creates',
// written out for d, with the transitions' guarded updates rendered by d
// as the repository renders them for each database when it loads.
func statementsOn(d *dialect.Dialect, creates statements) *statements {
	s := &creates
	s.appendMemories = d.AppendMemories
	s.updateSandbox = make(map[models.SandboxStatus]*dialect.Guard, len(sandboxSources))
	for to := range sandboxSources {
		s.updateSandbox[to] = new(dialect.Guard)
	}
	for _, t := range transitions {
		*t.guard(s) = *d.Guard(guardedUpdates[t.name])
	}
	return s
}

// pgRendering is PostgreSQL's rendering of a guarded update: its UPDATE in
// a CTE, then the outcome code of a row it changed nothing of (see package
// internal/dialect/postgres and GuardedUpdate.Code), which tests the guard
// again, then the done predicate. Both hold the UPDATE's guard whole.
var pgRendering = regexp.MustCompile(`^WITH changed AS \(UPDATE (\w+) SET (.+?) WHERE (.+) AND id = \$\d+ RETURNING 1\) ` +
	`SELECT FROM \w+, generate_series\(1, CASE WHEN EXISTS \(SELECT FROM changed\) THEN \d+ ELSE CASE WHEN .+? THEN \d+ WHEN (.+?) THEN \d+ ELSE CASE status WHEN `)

// recoverGuard returns the GuardedUpdate of the one statement call sends
// through a repository on a PostgreSQL DryRun session, which needs no
// server: PostgreSQL's is the one rendering that holds a guarded update
// whole (SET list, guard and done predicate) in one statement. Rendering
// the GuardedUpdate again must give that statement back, which makes the
// recovery exact; TestBaselineSendsRepositoryStatements checks the other
// databases' renderings against the repository's.
func recoverGuard(call func(context.Context, *repository.Repository) error) *dialect.GuardedUpdate {
	sent := dryRun(postgresDryRun(), call)
	if len(sent) != 1 {
		panic(fmt.Sprintf("render a transition: %d statements", len(sent)))
	}
	m := pgRendering.FindStringSubmatch(sent[0])
	if m == nil {
		panic("not a guarded update of package postgres: " + sent[0])
	}
	g := dialect.NewGuardedUpdate(m[1], m[2], m[3], m[4])
	if again := postgres.Dialect.Guard(g).SQL; again != sent[0] {
		panic(fmt.Sprintf("recovered a guarded update that renders\n%s\nnot\n%s", again, sent[0]))
	}
	return g
}

// dryRun returns the statements call sends through a repository on the
// DryRun session db, through the Create and Raw chains. There a transition
// sends its first statement only: the repository reads no outcome on a
// DryRun session (see Repository.outcome), so MariaDB's probe stays
// unsent.
func dryRun(db *gorm.DB, call func(context.Context, *repository.Repository) error) []string {
	var sent []string
	capture := func(db *gorm.DB) { sent = append(sent, db.Statement.SQL.String()) }
	err := errors.Join(
		db.Callback().Create().After("gorm:create").Register("bench:capture", capture),
		db.Callback().Raw().After("gorm:raw").Register("bench:capture", capture))
	if err == nil {
		err = call(context.Background(), repository.New(db))
	}
	if err != nil {
		panic(fmt.Sprintf("render on a DryRun session: %v", err))
	}
	return sent
}

// postgresDryRun and mariadbDryRun are DryRun sessions on GORM's
// dialectors of the databases, which render statements without a server.
func postgresDryRun() *gorm.DB {
	return openDryRun(gormpostgres.New(gormpostgres.Config{DSN: "host=localhost"}))
}

func mariadbDryRun() *gorm.DB {
	return openDryRun(gormmysql.New(gormmysql.Config{DSN: "root@tcp(localhost:3306)/x", SkipInitializeWithVersion: true}))
}

func openDryRun(d gorm.Dialector) *gorm.DB {
	db, err := gorm.Open(d, &gorm.Config{DryRun: true, DisableAutomaticPing: true, Logger: logger.Discard})
	if err != nil {
		panic(err)
	}
	return db
}

// pgStatements are the repository's statements on PostgreSQL. The
// creates' are written out (TestBaselineSendsRepositoryStatements checks
// them); each transition's guarded update and the read of its outcome are
// one statement that reports the outcome code as its row count (see
// package internal/dialect/postgres).
var pgStatements = statementsOn(&postgres.Dialect, statements{
	insertFeatureRun:      `INSERT INTO "feature_runs" ("id","phase","status","memories","metadata","created_at","updated_at") VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING`,
	insertSandbox:         `INSERT INTO "sandboxes" ("id","feature_run_id","status","provider","metadata","created_at","updated_at") VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING`,
	insertPhaseResult:     `INSERT INTO "phase_results" ("id","feature_run_id","phase","status","created_at","updated_at") VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING`,
	insertAgentInvocation: `INSERT INTO "agent_invocations" ("id","feature_run_id","phase_result_id","parent_invocation_id","agent","model","provider","status","input","input_tokens","output_tokens","cache_read_input_tokens","cache_write_input_tokens","reasoning_output_tokens","cost_nano_usd","started_at","created_at","updated_at") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18) ON CONFLICT DO NOTHING`,
	insertCTAEvent:        `INSERT INTO "cta_events" ("id","feature_run_id","kind","status","request_data","expires_at","created_at","updated_at") VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT DO NOTHING`,
})

// pgxConn is the baseline's conn on PostgreSQL: a pgxpool, whose statement
// cache prepares each statement once per connection.
type pgxConn struct{ pool *pgxpool.Pool }

func (c pgxConn) exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := c.pool.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

// code serves a Guard with a probe, which package postgres renders none
// of today; the baseline follows whatever its Dialect renders.
func (c pgxConn) code(ctx context.Context, query string, args ...any) (int64, error) {
	var code int64
	err := c.pool.QueryRow(ctx, query, args...).Scan(&code)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return code, err
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

// transition runs the guarded update g with vars, the row's ID last, and
// judges its outcome as the repository does: the statement's row count is
// the outcome code, or, where g has a probe, a changed row is
// dialect.CodeDone and the probe reads the code of an unchanged one. No
// row is a missing row, CodeRetry a row that changed under the statement,
// which then runs again, and from CodeRefused on a refusal naming the
// row's status.
func (s *baseline) transition(ctx context.Context, g *dialect.Guard, to, detail string, vars ...any) error {
	for {
		code, err := s.conn.exec(ctx, g.SQL, g.Args(vars)...)
		if err != nil {
			return err
		}
		if g.Probe != nil {
			if code > 0 {
				code = dialect.CodeDone
			} else if code, err = s.conn.code(ctx, g.Probe.SQL, g.Probe.Args(vars)...); err != nil {
				return err
			}
		}
		switch code {
		case 0:
			return repository.ErrNotFound
		case dialect.CodeDone:
			return nil
		case dialect.CodeRetry:
			continue
		}
		return &repository.TransitionError{Table: g.Table, ID: fmt.Sprint(vars[len(vars)-1]), From: dialect.Statuses[g.Table][code-dialect.CodeRefused], To: to, Detail: detail}
	}
}

// CreateFeatureRun implements workload.Store.
func (s *baseline) CreateFeatureRun(ctx context.Context, in repository.NewFeatureRun) (uuid.UUID, error) {
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
	_, err = s.conn.exec(ctx, s.sql.insertFeatureRun, id.String(), in.Phase, string(models.RunRunning), memories, metadata, t, t)
	return id, err
}

// UpdateFeatureRunPhase implements workload.Store.
func (s *baseline) UpdateFeatureRunPhase(ctx context.Context, runID uuid.UUID, phase string) error {
	return s.transition(ctx, &s.sql.updatePhase, string(models.RunRunning), fmt.Sprintf("phase %q", phase), phase, now(), runID.String())
}

// UpdateFeatureRunMemories implements workload.Store.
func (s *baseline) UpdateFeatureRunMemories(ctx context.Context, runID uuid.UUID, memories []any) error {
	if len(memories) == 0 {
		return nil
	}
	values, err := setArg(memories)
	if err != nil {
		return err
	}
	return s.transition(ctx, s.sql.appendMemories, string(models.RunRunning), "new memories", values, now(), runID.String())
}

// CompleteFeatureRun implements workload.Store.
func (s *baseline) CompleteFeatureRun(ctx context.Context, runID uuid.UUID) error {
	return s.finishRun(ctx, runID, models.RunCompleted)
}

// FailFeatureRun implements workload.Store.
func (s *baseline) FailFeatureRun(ctx context.Context, runID uuid.UUID) error {
	return s.finishRun(ctx, runID, models.RunFailed)
}

func (s *baseline) finishRun(ctx context.Context, runID uuid.UUID, to models.RunStatus) error {
	t := now()
	return s.transition(ctx, &s.sql.finishRun, string(to), "", string(to), nil, t, t, runID.String())
}

// CreateSandboxRecord implements workload.Store.
func (s *baseline) CreateSandboxRecord(ctx context.Context, in repository.NewSandbox) error {
	metadata, err := jsonArg(in.Metadata)
	if err != nil {
		return err
	}
	t := now()
	_, err = s.conn.exec(ctx, s.sql.insertSandbox, in.ID, in.FeatureRunID.String(), string(models.SandboxCreating), in.Provider, metadata, t, t)
	return err
}

// UpdateSandboxStatus implements workload.Store.
func (s *baseline) UpdateSandboxStatus(ctx context.Context, sandboxID string, status models.SandboxStatus) error {
	if _, ok := sandboxSources[status]; !ok {
		return fmt.Errorf("unknown sandbox status %q", status)
	}
	return s.transition(ctx, s.sql.updateSandbox[status], string(status), "", string(status), now(), sandboxID)
}

// CreatePhaseResult implements workload.Store.
func (s *baseline) CreatePhaseResult(ctx context.Context, in repository.NewPhaseResult) (uuid.UUID, error) {
	id, err := orNewV7(in.ID)
	if err != nil {
		return uuid.Nil, err
	}
	t := now()
	_, err = s.conn.exec(ctx, s.sql.insertPhaseResult, id.String(), in.FeatureRunID.String(), in.Phase, string(models.PhaseRunning), t, t)
	return id, err
}

// PassPhaseResult implements workload.Store.
func (s *baseline) PassPhaseResult(ctx context.Context, phaseResultID uuid.UUID, output any) error {
	out, err := jsonArg(output)
	if err != nil {
		return err
	}
	return s.finishPhase(ctx, phaseResultID, models.PhasePassed, out)
}

// FailPhaseResult implements workload.Store.
func (s *baseline) FailPhaseResult(ctx context.Context, phaseResultID uuid.UUID) error {
	return s.finishPhase(ctx, phaseResultID, models.PhaseFailed, nil)
}

func (s *baseline) finishPhase(ctx context.Context, id uuid.UUID, to models.PhaseStatus, output any) error {
	t := now()
	return s.transition(ctx, &s.sql.finishPhase, string(to), "", string(to), output, nil, t, t, id.String())
}

// CreateAgentInvocation implements workload.Store.
func (s *baseline) CreateAgentInvocation(ctx context.Context, in repository.NewAgentInvocation) (uuid.UUID, error) {
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
	_, err = s.conn.exec(ctx, s.sql.insertAgentInvocation, id.String(), in.FeatureRunID.String(), idArg(in.PhaseResultID), idArg(in.ParentInvocationID),
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
func (s *baseline) CompleteAgentInvocation(ctx context.Context, invocationID uuid.UUID, res repository.InvocationResult) error {
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
	return s.transition(ctx, &s.sql.finishInvocation, string(to), "",
		string(to), steps, toolCalls, output, res.InputTokens, res.OutputTokens, res.CacheReadInputTokens, res.CacheWriteInputTokens, res.ReasoningOutputTokens,
		res.CostNanoUSD, textArg(res.ResponseModel), textArg(res.ProviderRequestID), textArg(res.FinishReason), ttft, nil, t, t, invocationID.String())
}

// CreateCTAEvent implements workload.Store.
func (s *baseline) CreateCTAEvent(ctx context.Context, in repository.NewCTAEvent) error {
	request, err := jsonArg(in.RequestData)
	if err != nil {
		return err
	}
	var expiresAt any
	if !in.ExpiresAt.IsZero() {
		expiresAt = in.ExpiresAt.UTC().Truncate(time.Microsecond)
	}
	t := now()
	_, err = s.conn.exec(ctx, s.sql.insertCTAEvent, in.ID, in.FeatureRunID.String(), in.Kind, string(models.CTAPending), request, expiresAt, t, t)
	return err
}

// CompleteCTAEvent implements workload.Store.
func (s *baseline) CompleteCTAEvent(ctx context.Context, ctaID string, responseData any) error {
	response, err := jsonArg(responseData)
	if err != nil {
		return err
	}
	return s.resolveCTA(ctx, ctaID, models.CTACompleted, response)
}

// TimeoutCTAEvent implements workload.Store.
func (s *baseline) TimeoutCTAEvent(ctx context.Context, ctaID string) error {
	return s.resolveCTA(ctx, ctaID, models.CTATimedOut, nil)
}

func (s *baseline) resolveCTA(ctx context.Context, id string, to models.CTAStatus, response any) error {
	t := now()
	return s.transition(ctx, &s.sql.resolveCTA, string(to), "", string(to), response, t, t, id)
}
