package workload_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/canonjson"
	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/workload"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// callLog is a Store that records each call, with its arguments as JSON,
// and succeeds.
type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *callLog) log(method string, args ...any) error {
	b, err := json.Marshal(args)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, method+" "+string(b))
	return nil
}

func (l *callLog) CreateFeatureRun(_ context.Context, in repository.NewFeatureRun) (uuid.UUID, error) {
	return in.ID, l.log("CreateFeatureRun", in)
}
func (l *callLog) UpdateFeatureRunPhase(_ context.Context, id uuid.UUID, phase string) error {
	return l.log("UpdateFeatureRunPhase", id, phase)
}
func (l *callLog) UpdateFeatureRunMemories(_ context.Context, id uuid.UUID, m []any) error {
	return l.log("UpdateFeatureRunMemories", id, m)
}
func (l *callLog) CompleteFeatureRun(_ context.Context, id uuid.UUID) error {
	return l.log("CompleteFeatureRun", id)
}
func (l *callLog) FailFeatureRun(_ context.Context, id uuid.UUID) error {
	return l.log("FailFeatureRun", id)
}
func (l *callLog) CreateSandboxRecord(_ context.Context, in repository.NewSandbox) error {
	return l.log("CreateSandboxRecord", in)
}
func (l *callLog) UpdateSandboxStatus(_ context.Context, id string, s models.SandboxStatus) error {
	return l.log("UpdateSandboxStatus", id, s)
}
func (l *callLog) CreatePhaseResult(_ context.Context, in repository.NewPhaseResult) (uuid.UUID, error) {
	return in.ID, l.log("CreatePhaseResult", in)
}
func (l *callLog) PassPhaseResult(_ context.Context, id uuid.UUID, out any) error {
	return l.log("PassPhaseResult", id, out)
}
func (l *callLog) FailPhaseResult(_ context.Context, id uuid.UUID) error {
	return l.log("FailPhaseResult", id)
}
func (l *callLog) CreateAgentInvocation(_ context.Context, in repository.NewAgentInvocation) (uuid.UUID, error) {
	return in.ID, l.log("CreateAgentInvocation", in)
}
func (l *callLog) CompleteAgentInvocation(_ context.Context, id uuid.UUID, res repository.InvocationResult) error {
	return l.log("CompleteAgentInvocation", id, res)
}
func (l *callLog) CreateCTAEvent(_ context.Context, in repository.NewCTAEvent) error {
	return l.log("CreateCTAEvent", in)
}
func (l *callLog) CompleteCTAEvent(_ context.Context, id string, resp any) error {
	return l.log("CompleteCTAEvent", id, resp)
}
func (l *callLog) TimeoutCTAEvent(_ context.Context, id string) error {
	return l.log("TimeoutCTAEvent", id)
}

// record runs steps against a fresh callLog and returns its calls.
func record(t *testing.T, steps []workload.Step) []string {
	t.Helper()
	l := &callLog{}
	for _, s := range steps {
		require.NoError(t, s.Run(t.Context(), l), s.Name)
	}
	return l.calls
}

func method(call string) string { return call[:strings.IndexByte(call, ' ')] }

func TestGenerateIsDeterministic(t *testing.T) {
	a := record(t, workload.Generate(7, "wf-1"))
	assert.Equal(t, a, record(t, workload.Generate(7, "wf-1")), "same seed and key, same calls")
	assert.NotEqual(t, a, record(t, workload.Generate(8, "wf-1")), "the seed varies the data")

	other := strings.Join(record(t, workload.Generate(7, "wf-2")), "\n")
	for _, id := range []uuid.UUID{workload.RunID("wf-1"), repository.StableID("wf-1", "phase", "plan", "1")} {
		assert.Contains(t, strings.Join(a, "\n"), id.String())
		assert.NotContains(t, other, id.String(), "another key shares no ID")
	}
}

func TestGenerateShape(t *testing.T) {
	steps := workload.Generate(1, "shape")
	assert.Len(t, steps, 80)
	names := map[string]bool{}
	for _, s := range steps {
		assert.False(t, names[s.Name], "step names are unique: %s", s.Name)
		names[s.Name] = true
	}
	calls := record(t, steps)
	perMethod := map[string]int{}
	memories := map[string]bool{}
	for _, c := range calls {
		perMethod[method(c)]++
		if m := method(c); m == "CreateFeatureRun" || m == "UpdateFeatureRunMemories" {
			var args []json.RawMessage
			require.NoError(t, json.Unmarshal([]byte(c[len(m)+1:]), &args))
			var values []json.RawMessage
			if m == "CreateFeatureRun" {
				var in struct{ Memories []json.RawMessage }
				require.NoError(t, json.Unmarshal(args[0], &in))
				values = in.Memories
			} else {
				require.NoError(t, json.Unmarshal(args[1], &values))
			}
			for _, v := range values {
				canon, err := canonjson.Canonicalize(v)
				require.NoError(t, err)
				memories[string(canon)] = true
			}
		}
	}
	assert.Len(t, perMethod, 15, "every write of the contract is called: %v", perMethod)
	assert.Equal(t, 1, perMethod["CreateFeatureRun"])
	assert.Equal(t, workload.Phases, perMethod["UpdateFeatureRunPhase"])
	assert.Equal(t, workload.Phases+1, perMethod["CreatePhaseResult"], "five phases, one retried")
	assert.Equal(t, workload.Invocations, perMethod["CreateAgentInvocation"])
	assert.Equal(t, workload.Invocations, perMethod["CompleteAgentInvocation"])
	assert.Equal(t, workload.Sandboxes, perMethod["CreateSandboxRecord"])
	assert.Equal(t, workload.CTAEvents, perMethod["CreateCTAEvent"])
	assert.GreaterOrEqual(t, perMethod["UpdateFeatureRunMemories"], 3, "memories come over several appends")
	assert.Len(t, memories, workload.Memories, "distinct memories, by JSON value")
}

// TestGenerateSubAgents checks the invocations form trees, one per phase
// attempt, three levels deep at least once, with each sub-agent created
// after its parent and completed before it, and that every invocation
// records the fields known at its start and at its end, as the
// OpenTelemetry convention counts tokens.
func TestGenerateSubAgents(t *testing.T) {
	for seed := range int64(20) {
		calls := record(t, workload.Generate(seed, "trees"))
		created := map[uuid.UUID]int{}
		completed := map[uuid.UUID]int{}
		parents := map[uuid.UUID]*uuid.UUID{}
		seen := map[string]bool{}
		for i, c := range calls {
			var args []json.RawMessage
			m := method(c)
			switch m {
			case "CreateAgentInvocation", "CompleteAgentInvocation":
				require.NoError(t, json.Unmarshal([]byte(c[len(m)+1:]), &args))
			default:
				continue
			}
			if m == "CreateAgentInvocation" {
				var in repository.NewAgentInvocation
				require.NoError(t, json.Unmarshal(args[0], &in))
				created[in.ID] = i
				parents[in.ID] = in.ParentInvocationID
				assert.NotEmpty(t, in.Provider)
				assert.NotNil(t, in.StartedAt)
				continue
			}
			var id uuid.UUID
			var res repository.InvocationResult
			require.NoError(t, json.Unmarshal(args[0], &id))
			require.NoError(t, json.Unmarshal(args[1], &res))
			completed[id] = i
			assert.LessOrEqual(t, res.CacheReadInputTokens+res.CacheWriteInputTokens, res.InputTokens)
			assert.LessOrEqual(t, res.ReasoningOutputTokens, res.OutputTokens)
			assert.NotEmpty(t, res.ResponseModel)
			assert.NotEmpty(t, res.ProviderRequestID)
			assert.NotEmpty(t, res.FinishReason)
			seen["cache write"] = seen["cache write"] || res.CacheWriteInputTokens > 0
			seen["reasoning"] = seen["reasoning"] || res.ReasoningOutputTokens > 0
			seen["streamed"] = seen["streamed"] || res.TimeToFirstTokenMicros != nil
			seen["not streamed"] = seen["not streamed"] || res.TimeToFirstTokenMicros == nil
		}
		require.Len(t, created, workload.Invocations)
		roots, deepest := 0, 0
		for id, parent := range parents {
			depth := 1
			for p := parent; p != nil; p = parents[*p] {
				depth++
				require.Contains(t, created, *p, "a parent is an invocation of the run")
			}
			deepest = max(deepest, depth)
			if parent == nil {
				roots++
				continue
			}
			assert.Less(t, created[*parent], created[id], "a sub-agent starts after its parent")
			assert.Less(t, completed[id], completed[*parent], "and ends before it")
		}
		assert.Equal(t, workload.Phases+1, roots, "one lead agent per phase attempt")
		assert.GreaterOrEqual(t, deepest, 3, "seed %d: sub-agents of sub-agents", seed)
		if seed == 0 {
			assert.Len(t, seen, 4, "the seed varies cache writes, reasoning and streaming: %v", seen)
		}
	}
}

// TestGenerateOnRepository runs generated workloads on the repository and
// checks that each ends as the story in Generate's documentation says, and
// that a replay of every step from the start is accepted by Check.
func TestGenerateOnRepository(t *testing.T) {
	winners := map[models.CTAStatus]int{}
	for seed := range int64(8) {
		db := dbtest.SQLite(t)
		ctx := t.Context()
		require.NoError(t, migrate.Up(ctx, db))
		repo := repository.New(db)
		key := fmt.Sprintf("story-%d", seed)
		steps := workload.Generate(seed, key)

		raw := map[string]error{}
		for _, s := range steps {
			err := s.Run(ctx, repo)
			raw[s.Name] = err
			require.NoError(t, workload.Check(s.Name, workload.InOrder, err))
		}
		assert.ErrorIs(t, raw["run/fail-late"], repository.ErrInvalidTransition)
		lost := 0
		for _, name := range []string{"cta/approve-merge/complete-race", "cta/approve-merge/timeout-race"} {
			if errors.Is(raw[name], repository.ErrInvalidTransition) {
				lost++
			}
		}
		assert.Equal(t, 1, lost, "exactly one side of the race loses")

		var run models.FeatureRun
		require.NoError(t, db.Take(&run, "id = ?", workload.RunID(key)).Error)
		assert.Equal(t, models.RunCompleted, run.Status)
		assert.Equal(t, "review", run.Phase)
		var mem []any
		require.NoError(t, json.Unmarshal(run.Memories, &mem))
		assert.Len(t, mem, workload.Memories)

		statuses := func(table string) map[string]int {
			var rows []struct{ Status string }
			require.NoError(t, db.Table(table).Select("status").Where("feature_run_id = ?", run.ID).Find(&rows).Error)
			n := map[string]int{}
			for _, r := range rows {
				n[r.Status]++
			}
			return n
		}
		assert.Equal(t, map[string]int{"stopped": 1, "failed": 1}, statuses("sandboxes"))
		assert.Equal(t, map[string]int{"passed": workload.Phases, "failed": 1}, statuses("phase_results"))
		assert.Equal(t, map[string]int{"completed": workload.Invocations}, statuses("agent_invocations"))
		var subAgents, cached int64
		require.NoError(t, db.Model(&models.AgentInvocation{}).Where("parent_invocation_id IS NOT NULL").Count(&subAgents).Error)
		require.NoError(t, db.Model(&models.AgentInvocation{}).Where("cache_read_input_tokens > 0").Count(&cached).Error)
		assert.EqualValues(t, workload.Invocations-workload.Phases-1, subAgents, "all but the lead agents are sub-agents")
		assert.Positive(t, cached)
		cta := statuses("cta_events")
		assert.Equal(t, 3, cta["completed"]+cta["timed_out"])
		var merge models.CTAEvent
		require.NoError(t, db.Take(&merge, "id = ?", "cta-"+repository.StableID(key, "cta", "approve-merge").String()).Error)
		winners[merge.Status]++

		var cost int64
		require.NoError(t, db.Table("agent_invocations").Select("SUM(cost_nano_usd)").Scan(&cost).Error)
		assert.Positive(t, cost)

		for _, s := range steps {
			assert.NoError(t, workload.Exec(ctx, repo, s, workload.Replay))
		}
	}
	assert.Len(t, winners, 2, "seeds vary who wins the raced CTA: %v", winners)
}

func TestCheck(t *testing.T) {
	invalid := &repository.TransitionError{Table: "t", ID: "1", From: "a", To: "b"}
	other := errors.New("connection reset")
	cases := []struct {
		name string
		mode workload.Mode
		err  error
		ok   bool
	}{
		{"run/create", workload.InOrder, nil, true},
		{"run/create", workload.Replay, other, false},
		{"run/create", workload.Replay, invalid, false},
		{"run/fail-late", workload.InOrder, invalid, true},
		{"run/fail-late", workload.Replay, invalid, true},
		{"run/fail-late", workload.InOrder, nil, false},
		{"run/fail-late", workload.InOrder, other, false},
		{"cta/approve-merge/complete-race", workload.InOrder, nil, true},
		{"cta/approve-merge/timeout-race", workload.InOrder, invalid, true},
		{"cta/approve-merge/timeout-race", workload.InOrder, repository.ErrNotFound, false},
		{"cta/approve-design/complete", workload.InOrder, invalid, false},
		{"run/phase/plan", workload.InOrder, invalid, false},
		{"run/phase/plan", workload.Replay, invalid, true},
		{"run/phase/plan", workload.Replay, other, false},
		{"sandbox/0/start", workload.InOrder, invalid, false},
		{"sandbox/0/start", workload.Replay, invalid, true},
		{"sandbox/0/create", workload.Replay, invalid, false},
		{"phase/test/1/fail", workload.Replay, invalid, false},
		{"run/memories/plan", workload.Replay, invalid, false},
	}
	for _, c := range cases {
		err := workload.Check(c.name, c.mode, c.err)
		if c.ok {
			assert.NoError(t, err, "%s %s %v", c.name, c.mode, c.err)
			continue
		}
		require.Error(t, err, "%s %s %v", c.name, c.mode, c.err)
		assert.Contains(t, err.Error(), c.name)
		if c.err != nil {
			assert.ErrorIs(t, err, c.err, "the step's error stays matchable")
		}
	}
}

func TestExecRunsTheStep(t *testing.T) {
	ran := 0
	step := workload.Step{Name: "run/complete", Run: func(context.Context, workload.Store) error {
		ran++
		return repository.ErrNotFound
	}}
	err := workload.Exec(t.Context(), &callLog{}, step, workload.InOrder)
	assert.ErrorIs(t, err, repository.ErrNotFound)
	assert.Equal(t, 1, ran)
}
