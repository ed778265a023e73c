package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/datatypes"
	gormpostgres "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/agentpipeline/persistence/internal/workload"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// naiveStore is the third side: the fifteen writes as a GORM user would
// write them from the original TypeScript plan, with GORM's own API and
// none of the repository's statements. It keeps GORM's defaults, so every
// Create and Updates is a transaction of its own (BEGIN, the statement,
// COMMIT). A transition is an Updates guarded by the statuses it may leave
// and, when that changed no row, a First of the row to tell a replay from a
// missing row or a refusal. The memory append reads the run, merges in Go
// and writes the whole array back, in a transaction but without locking
// the row, as a user who has not thought about concurrent appends would.
//
// Its outcomes are the repository's (nil, an error wrapping
// repository.ErrNotFound, a *repository.TransitionError), so the workload
// can drive it; TestNaiveOutcomesLikeRepository checks them. Its rows are
// not quite the repository's, and are not compared: a nil JSON argument is
// stored as JSON null rather than SQL NULL, a resumed sandbox gets a new
// started_at, and duplicates within a new run's first memories are kept.
type naiveStore struct {
	db *gorm.DB
}

var _ workload.Store = (*naiveStore)(nil)

// openNaive opens the naive side on conn, counting its connections' bytes
// in e.naiveIO. Its configuration is GORM's default but for two settings: the
// logger, discarded as on the repository's side, and TranslateError, the
// documented way for a GORM user to recognise a foreign key violation.
func (e *env) openNaive(conn *pgx.ConnConfig) error {
	conn.DialFunc = e.naiveIO.dial(conn.DialFunc)
	e.naiveSQL = stdlib.OpenDB(*conn)
	e.naiveSQL.SetMaxOpenConns(poolSize)
	e.naiveSQL.SetMaxIdleConns(poolSize)
	db, err := gorm.Open(gormpostgres.New(gormpostgres.Config{Conn: e.naiveSQL}), &gorm.Config{
		Logger:         discardLogger,
		TranslateError: true,
	})
	if err != nil {
		return fmt.Errorf("open naive gorm: %w", err)
	}
	e.naive = &naiveStore{db: db}
	return nil
}

// orRandom returns id, or a random UUID (version 4, where the repository
// makes a UUIDv7) when id is zero. A given ID is kept, so that a replay
// finds the first row.
func orRandom(id uuid.UUID) uuid.UUID {
	if id == uuid.Nil {
		return uuid.New()
	}
	return id
}

// create inserts row unless one with its primary key exists.
func (s *naiveStore) create(ctx context.Context, row any) error {
	return s.db.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(row).Error
}

// orphan returns err, what a create of a row under parent returned, with a
// foreign key violation reported as the contract does: the only foreign
// keys of a row name its parents, so parent is missing.
func orphan(err error, parent string) error {
	if errors.Is(err, gorm.ErrForeignKeyViolated) {
		return fmt.Errorf("%s: %w", parent, repository.ErrNotFound)
	}
	return err
}

// update is a transition of the row of M whose primary key is id: Updates
// of values where guard (such as "status = ?" or "status IN ?") holds for
// from. It returns a nil row when it changed the row. Otherwise it returns
// the row as First reads it, for the caller to tell a replay from a
// refusal, or an error wrapping repository.ErrNotFound when there is none.
func update[M interface{ TableName() string }](ctx context.Context, db *gorm.DB, id any, guard string, from any, values map[string]any) (*M, error) {
	res := db.WithContext(ctx).Model(new(M)).Where("id = ? AND "+guard, id, from).Updates(values)
	if res.Error != nil || res.RowsAffected > 0 {
		return nil, res.Error
	}
	row := new(M)
	err := db.WithContext(ctx).First(row, "id = ?", id).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, fmt.Errorf("%s %v: %w", (*row).TableName(), id, repository.ErrNotFound)
	}
	return row, err
}

// refused is the outcome of a transition to status to that changed no row
// of table, whose row is in status from: nil when it is there already, as
// after an earlier call, or else the refusal.
func refused(table string, id any, from, to string) error {
	if from == to {
		return nil
	}
	return &repository.TransitionError{Table: table, ID: fmt.Sprint(id), From: from, To: to}
}

// CreateFeatureRun implements workload.Store.
func (s *naiveStore) CreateFeatureRun(ctx context.Context, in repository.NewFeatureRun) (uuid.UUID, error) {
	memories, err := json.Marshal(in.Memories)
	if err != nil {
		return uuid.Nil, err
	}
	metadata, err := json.Marshal(in.Metadata)
	if err != nil {
		return uuid.Nil, err
	}
	id := orRandom(in.ID)
	return id, s.create(ctx, &models.FeatureRun{
		ID:       id,
		Phase:    in.Phase,
		Status:   models.RunRunning,
		Memories: datatypes.JSON(memories),
		Metadata: datatypes.JSON(metadata),
	})
}

// UpdateFeatureRunPhase implements workload.Store.
func (s *naiveStore) UpdateFeatureRunPhase(ctx context.Context, runID uuid.UUID, phase string) error {
	run, err := update[models.FeatureRun](ctx, s.db, runID, "status = ?", models.RunRunning,
		map[string]any{"phase": phase, "updated_at": time.Now()})
	if err != nil || run == nil {
		return err
	}
	if run.Phase == phase {
		return nil
	}
	return &repository.TransitionError{Table: run.TableName(), ID: runID.String(), From: string(run.Status), To: string(models.RunRunning), Detail: "phase " + phase}
}

// UpdateFeatureRunMemories implements workload.Store.
func (s *naiveStore) UpdateFeatureRunMemories(ctx context.Context, runID uuid.UUID, memories []any) error {
	if len(memories) == 0 {
		return nil
	}
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var run models.FeatureRun
		if err := tx.First(&run, "id = ?", runID).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return fmt.Errorf("feature run %s: %w", runID, repository.ErrNotFound)
			}
			return err
		}
		var stored []any
		if err := json.Unmarshal(run.Memories, &stored); err != nil {
			return err
		}
		seen := make(map[string]bool, len(stored)+len(memories))
		for _, v := range stored {
			b, err := json.Marshal(v)
			if err != nil {
				return err
			}
			seen[string(b)] = true
		}
		added := false
		for _, v := range memories {
			// A new value goes through the decoding a stored one went
			// through before it is compared: json.Marshal keeps a
			// json.RawMessage as written, so its key order, escapes and
			// number forms would make a stored value look new.
			b, err := json.Marshal(v)
			if err != nil {
				return err
			}
			var decoded any
			if err := json.Unmarshal(b, &decoded); err != nil {
				return err
			}
			if b, err = json.Marshal(decoded); err != nil {
				return err
			}
			if seen[string(b)] {
				continue
			}
			seen[string(b)] = true
			stored = append(stored, decoded)
			added = true
		}
		switch {
		case !added:
			return nil
		case run.Status != models.RunRunning:
			return &repository.TransitionError{Table: run.TableName(), ID: runID.String(), From: string(run.Status), To: string(models.RunRunning), Detail: "new memories"}
		}
		b, err := json.Marshal(stored)
		if err != nil {
			return err
		}
		return tx.Model(&run).Updates(map[string]any{"memories": datatypes.JSON(b), "updated_at": time.Now()}).Error
	})
}

// CompleteFeatureRun implements workload.Store.
func (s *naiveStore) CompleteFeatureRun(ctx context.Context, runID uuid.UUID) error {
	return s.finishRun(ctx, runID, models.RunCompleted)
}

// FailFeatureRun implements workload.Store.
func (s *naiveStore) FailFeatureRun(ctx context.Context, runID uuid.UUID) error {
	return s.finishRun(ctx, runID, models.RunFailed)
}

func (s *naiveStore) finishRun(ctx context.Context, runID uuid.UUID, to models.RunStatus) error {
	t := time.Now()
	run, err := update[models.FeatureRun](ctx, s.db, runID, "status = ?", models.RunRunning,
		map[string]any{"status": to, "completed_at": t, "updated_at": t})
	if err != nil || run == nil {
		return err
	}
	return refused(run.TableName(), runID, string(run.Status), string(to))
}

// CreateSandboxRecord implements workload.Store.
func (s *naiveStore) CreateSandboxRecord(ctx context.Context, in repository.NewSandbox) error {
	metadata, err := json.Marshal(in.Metadata)
	if err != nil {
		return err
	}
	return orphan(s.create(ctx, &models.Sandbox{
		ID:           in.ID,
		FeatureRunID: in.FeatureRunID,
		Status:       models.SandboxCreating,
		Provider:     in.Provider,
		Metadata:     datatypes.JSON(metadata),
	}), "feature run "+in.FeatureRunID.String())
}

// UpdateSandboxStatus implements workload.Store.
func (s *naiveStore) UpdateSandboxStatus(ctx context.Context, sandboxID string, status models.SandboxStatus) error {
	sources, ok := sandboxSources[status]
	if !ok {
		return fmt.Errorf("unknown sandbox status %q", status)
	}
	t := time.Now()
	values := map[string]any{"status": status, "updated_at": t}
	if status == models.SandboxRunning {
		values["started_at"] = t
	}
	if status.Terminal() {
		values["stopped_at"] = t
	}
	sb, err := update[models.Sandbox](ctx, s.db, sandboxID, "status IN ?", sources, values)
	if err != nil || sb == nil {
		return err
	}
	return refused(sb.TableName(), sandboxID, string(sb.Status), string(status))
}

// CreatePhaseResult implements workload.Store.
func (s *naiveStore) CreatePhaseResult(ctx context.Context, in repository.NewPhaseResult) (uuid.UUID, error) {
	id := orRandom(in.ID)
	return id, orphan(s.create(ctx, &models.PhaseResult{
		ID:           id,
		FeatureRunID: in.FeatureRunID,
		Phase:        in.Phase,
		Status:       models.PhaseRunning,
	}), "feature run "+in.FeatureRunID.String())
}

// PassPhaseResult implements workload.Store.
func (s *naiveStore) PassPhaseResult(ctx context.Context, phaseResultID uuid.UUID, output any) error {
	out, err := json.Marshal(output)
	if err != nil {
		return err
	}
	return s.finishPhase(ctx, phaseResultID, models.PhasePassed, map[string]any{"output": datatypes.JSON(out)})
}

// FailPhaseResult implements workload.Store.
func (s *naiveStore) FailPhaseResult(ctx context.Context, phaseResultID uuid.UUID) error {
	return s.finishPhase(ctx, phaseResultID, models.PhaseFailed, map[string]any{})
}

// finishPhase moves a running phase result to status to, setting values
// besides the status and times.
func (s *naiveStore) finishPhase(ctx context.Context, id uuid.UUID, to models.PhaseStatus, values map[string]any) error {
	t := time.Now()
	values["status"], values["finished_at"], values["updated_at"] = to, t, t
	phase, err := update[models.PhaseResult](ctx, s.db, id, "status = ?", models.PhaseRunning, values)
	if err != nil || phase == nil {
		return err
	}
	return refused(phase.TableName(), id, string(phase.Status), string(to))
}

// CreateAgentInvocation implements workload.Store.
func (s *naiveStore) CreateAgentInvocation(ctx context.Context, in repository.NewAgentInvocation) (uuid.UUID, error) {
	input, err := json.Marshal(in.Input)
	if err != nil {
		return uuid.Nil, err
	}
	id := orRandom(in.ID)
	return id, orphan(s.create(ctx, &models.AgentInvocation{
		ID:                 id,
		FeatureRunID:       in.FeatureRunID,
		PhaseResultID:      in.PhaseResultID,
		ParentInvocationID: in.ParentInvocationID,
		Agent:              in.Agent,
		Model:              in.Model,
		Provider:           in.Provider,
		StartedAt:          in.StartedAt,
		Status:             models.InvocationRunning,
		Input:              datatypes.JSON(input),
	}), "feature run "+in.FeatureRunID.String()+", its phase result or the parent invocation")
}

// CompleteAgentInvocation implements workload.Store.
func (s *naiveStore) CompleteAgentInvocation(ctx context.Context, invocationID uuid.UUID, res repository.InvocationResult) error {
	steps, err := json.Marshal(res.Steps)
	if err != nil {
		return err
	}
	toolCalls, err := json.Marshal(res.ToolCalls)
	if err != nil {
		return err
	}
	output, err := json.Marshal(res.Output)
	if err != nil {
		return err
	}
	t := time.Now()
	to := models.InvocationCompleted
	inv, err := update[models.AgentInvocation](ctx, s.db, invocationID, "status = ?", models.InvocationRunning, map[string]any{
		"status":                     to,
		"steps":                      datatypes.JSON(steps),
		"tool_calls":                 datatypes.JSON(toolCalls),
		"output":                     datatypes.JSON(output),
		"input_tokens":               res.InputTokens,
		"output_tokens":              res.OutputTokens,
		"cache_read_input_tokens":    res.CacheReadInputTokens,
		"cache_write_input_tokens":   res.CacheWriteInputTokens,
		"reasoning_output_tokens":    res.ReasoningOutputTokens,
		"cost_nano_usd":              res.CostNanoUSD,
		"response_model":             res.ResponseModel,
		"provider_request_id":        res.ProviderRequestID,
		"finish_reason":              res.FinishReason,
		"time_to_first_token_micros": res.TimeToFirstTokenMicros,
		"finished_at":                t,
		"updated_at":                 t,
	})
	if err != nil || inv == nil {
		return err
	}
	return refused(inv.TableName(), invocationID, string(inv.Status), string(to))
}

// CreateCTAEvent implements workload.Store.
func (s *naiveStore) CreateCTAEvent(ctx context.Context, in repository.NewCTAEvent) error {
	request, err := json.Marshal(in.RequestData)
	if err != nil {
		return err
	}
	event := &models.CTAEvent{
		ID:           in.ID,
		FeatureRunID: in.FeatureRunID,
		Kind:         in.Kind,
		Status:       models.CTAPending,
		RequestData:  datatypes.JSON(request),
	}
	if !in.ExpiresAt.IsZero() {
		event.ExpiresAt = &in.ExpiresAt
	}
	return orphan(s.create(ctx, event), "feature run "+in.FeatureRunID.String())
}

// CompleteCTAEvent implements workload.Store.
func (s *naiveStore) CompleteCTAEvent(ctx context.Context, ctaID string, responseData any) error {
	response, err := json.Marshal(responseData)
	if err != nil {
		return err
	}
	return s.resolveCTA(ctx, ctaID, models.CTACompleted, map[string]any{"response_data": datatypes.JSON(response)})
}

// TimeoutCTAEvent implements workload.Store.
func (s *naiveStore) TimeoutCTAEvent(ctx context.Context, ctaID string) error {
	return s.resolveCTA(ctx, ctaID, models.CTATimedOut, map[string]any{})
}

// resolveCTA moves a pending CTA event to status to, setting values besides
// the status and times.
func (s *naiveStore) resolveCTA(ctx context.Context, id string, to models.CTAStatus, values map[string]any) error {
	t := time.Now()
	values["status"], values["resolved_at"], values["updated_at"] = to, t, t
	event, err := update[models.CTAEvent](ctx, s.db, id, "status = ?", models.CTAPending, values)
	if err != nil || event == nil {
		return err
	}
	return refused(event.TableName(), id, string(event.Status), string(to))
}

// outcomeProbe is one call whose outcome the naive side must share with the
// repository. run seeds, with s, the rows the call needs, and makes it.
type outcomeProbe struct {
	name, want string
	run        func(ctx context.Context, st workload.Store, s seeder) error
}

// outcomeProbes are the calls off the paths the benchmarks take: writes to
// rows that do not exist, creates under a parent that does not, and
// transitions out of states they may not leave, or into the state a
// finished row is in.
var outcomeProbes = []outcomeProbe{
	{"UpdateFeatureRunPhase/missing", "not found", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.UpdateFeatureRunPhase(ctx, uuid.New(), "plan")
	}},
	{"UpdateFeatureRunMemories/missing", "not found", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.UpdateFeatureRunMemories(ctx, uuid.New(), []any{"x"})
	}},
	{"CompleteFeatureRun/missing", "not found", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.CompleteFeatureRun(ctx, uuid.New())
	}},
	{"FailFeatureRun/missing", "not found", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.FailFeatureRun(ctx, uuid.New())
	}},
	{"UpdateSandboxStatus/missing", "not found", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.UpdateSandboxStatus(ctx, "sb-"+uuid.NewString(), models.SandboxRunning)
	}},
	{"PassPhaseResult/missing", "not found", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.PassPhaseResult(ctx, uuid.New(), phaseOutput)
	}},
	{"FailPhaseResult/missing", "not found", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.FailPhaseResult(ctx, uuid.New())
	}},
	{"CompleteAgentInvocation/missing", "not found", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.CompleteAgentInvocation(ctx, uuid.New(), invocationDone)
	}},
	{"CompleteCTAEvent/missing", "not found", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.CompleteCTAEvent(ctx, "cta-"+uuid.NewString(), ctaResponse)
	}},
	{"TimeoutCTAEvent/missing", "not found", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.TimeoutCTAEvent(ctx, "cta-"+uuid.NewString())
	}},
	{"CreateSandboxRecord/missing run", "not found", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.CreateSandboxRecord(ctx, repository.NewSandbox{ID: "sb-" + uuid.NewString(), FeatureRunID: uuid.New(), Provider: "e2b"})
	}},
	{"CreatePhaseResult/missing run", "not found", func(ctx context.Context, st workload.Store, s seeder) error {
		_, err := st.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: uuid.New(), FeatureRunID: uuid.New(), Phase: "plan"})
		return err
	}},
	{"CreateAgentInvocation/missing run", "not found", func(ctx context.Context, st workload.Store, s seeder) error {
		_, err := st.CreateAgentInvocation(ctx, repository.NewAgentInvocation{ID: uuid.New(), FeatureRunID: uuid.New(), Agent: "coder", Model: "model-1"})
		return err
	}},
	{"CreateAgentInvocation/missing phase result", "not found", func(ctx context.Context, st workload.Store, s seeder) error {
		phase := uuid.New()
		_, err := st.CreateAgentInvocation(ctx, repository.NewAgentInvocation{ID: uuid.New(), FeatureRunID: s.run(), PhaseResultID: &phase, Agent: "coder", Model: "model-1"})
		return err
	}},
	{"CreateCTAEvent/missing run", "not found", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: "cta-" + uuid.NewString(), FeatureRunID: uuid.New(), Kind: "approval"})
	}},
	{"UpdateFeatureRunPhase/completed", "refused: feature_runs completed -> running", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.UpdateFeatureRunPhase(ctx, s.runs(1, models.RunCompleted, 0)[0], "implement")
	}},
	{"UpdateFeatureRunPhase/completed, same phase", "nil", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.UpdateFeatureRunPhase(ctx, s.runs(1, models.RunCompleted, 0)[0], "plan")
	}},
	{"UpdateFeatureRunMemories/failed, new", "refused: feature_runs failed -> running", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.UpdateFeatureRunMemories(ctx, s.runs(1, models.RunFailed, 2)[0], []any{"stored 1", "new"})
	}},
	{"UpdateFeatureRunMemories/failed, present in another spelling", "nil", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.UpdateFeatureRunMemories(ctx, s.runs(1, models.RunFailed, 2)[0], []any{json.RawMessage(`"stored \u0031"`), "stored 2"})
	}},
	{"CompleteFeatureRun/failed", "refused: feature_runs failed -> completed", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.CompleteFeatureRun(ctx, s.runs(1, models.RunFailed, 0)[0])
	}},
	{"FailFeatureRun/completed", "refused: feature_runs completed -> failed", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.FailFeatureRun(ctx, s.runs(1, models.RunCompleted, 0)[0])
	}},
	{"UpdateSandboxStatus/stopped to running", "refused: sandboxes stopped -> running", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.UpdateSandboxStatus(ctx, s.sandboxes(s.run(), 1, models.SandboxStopped)[0], models.SandboxRunning)
	}},
	{"UpdateSandboxStatus/running to creating", "refused: sandboxes running -> creating", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.UpdateSandboxStatus(ctx, s.sandboxes(s.run(), 1, models.SandboxRunning)[0], models.SandboxCreating)
	}},
	{"UpdateSandboxStatus/creating to creating", "nil", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.UpdateSandboxStatus(ctx, s.sandboxes(s.run(), 1, models.SandboxCreating)[0], models.SandboxCreating)
	}},
	{"PassPhaseResult/failed", "refused: phase_results failed -> passed", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.PassPhaseResult(ctx, s.phases(s.run(), 1, models.PhaseFailed)[0], phaseOutput)
	}},
	{"FailPhaseResult/passed", "refused: phase_results passed -> failed", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.FailPhaseResult(ctx, s.phases(s.run(), 1, models.PhasePassed)[0])
	}},
	{"CompleteAgentInvocation/failed", "refused: agent_invocations failed -> completed", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.CompleteAgentInvocation(ctx, s.invocations(s.run(), 1, models.InvocationFailed)[0], invocationDone)
	}},
	{"CompleteCTAEvent/timed out", "refused: cta_events timed_out -> completed", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.CompleteCTAEvent(ctx, s.ctaEvents(s.run(), 1, models.CTATimedOut)[0], ctaResponse)
	}},
	{"TimeoutCTAEvent/completed", "refused: cta_events completed -> timed_out", func(ctx context.Context, st workload.Store, s seeder) error {
		return st.TimeoutCTAEvent(ctx, s.ctaEvents(s.run(), 1, models.CTACompleted)[0])
	}},
}

// outcome names what a write returned as the contract tells outcomes apart.
func outcome(err error) string {
	var te *repository.TransitionError
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, repository.ErrNotFound):
		return "not found"
	case errors.As(err, &te):
		return fmt.Sprintf("refused: %s %s -> %s", te.Table, te.From, te.To)
	}
	return "error: " + err.Error()
}

// TestNaiveOutcomesLikeRepository checks that the naive side is a port of
// the same contract: on the happy and replay paths of every write, and on
// outcomeProbes, it returns what the repository returns. Each side gets rows
// of its own, seeded alike.
func TestNaiveOutcomesLikeRepository(t *testing.T) {
	if testing.Short() {
		t.Skip("creates a database of its own")
	}
	e := setup(t)
	ctx := t.Context()
	s := seeder{b: t, ctx: ctx, db: e}
	probes := outcomeProbes
	for _, w := range writeCases {
		probes = append(probes,
			outcomeProbe{w.name + "/happy", "nil", func(ctx context.Context, st workload.Store, s seeder) error { return w.happy(s, 1)(ctx, st, 0) }},
			outcomeProbe{w.name + "/replay", "nil", func(ctx context.Context, st workload.Store, s seeder) error { return w.replay(s, 1)(ctx, st, 0) }},
		)
	}
	for _, p := range probes {
		for _, impl := range []string{implRepository, implNaive} {
			st, _ := e.store(impl)
			if got := outcome(p.run(ctx, st, s)); got != p.want {
				t.Errorf("%s: %s returned %s, want %s", p.name, impl, got, p.want)
			}
		}
	}
}
