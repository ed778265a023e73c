package contracttest

import (
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/repository"
)

// Getters tests the five Get methods.
func Getters(t *testing.T, open dbtest.Opener) {
	e := setup(t, open)
	f := e.fixture()

	run, err := e.repo.GetFeatureRun(e.ctx, f.run)
	require.NoError(t, err)
	assert.Equal(t, f.run, run.ID)
	sandbox, err := e.repo.GetSandbox(e.ctx, f.sandbox)
	require.NoError(t, err)
	assert.Equal(t, f.sandbox, sandbox.ID)
	phase, err := e.repo.GetPhaseResult(e.ctx, f.phase)
	require.NoError(t, err)
	assert.Equal(t, f.phase, phase.ID)
	inv, err := e.repo.GetAgentInvocation(e.ctx, f.invocation)
	require.NoError(t, err)
	assert.Equal(t, f.invocation, inv.ID)
	cta, err := e.repo.GetCTAEvent(e.ctx, f.cta)
	require.NoError(t, err)
	assert.Equal(t, f.cta, cta.ID)

	missing := []error{}
	_, err = e.repo.GetFeatureRun(e.ctx, uuid.New())
	missing = append(missing, err)
	_, err = e.repo.GetSandbox(e.ctx, "missing")
	missing = append(missing, err)
	_, err = e.repo.GetPhaseResult(e.ctx, uuid.New())
	missing = append(missing, err)
	_, err = e.repo.GetAgentInvocation(e.ctx, uuid.New())
	missing = append(missing, err)
	_, err = e.repo.GetCTAEvent(e.ctx, "missing")
	missing = append(missing, err)
	for i, err := range missing {
		assert.ErrorIs(t, err, repository.ErrNotFound, "getter %d", i)
	}

	invalid := []error{}
	_, err = e.repo.GetFeatureRun(e.ctx, uuid.Nil)
	invalid = append(invalid, err)
	_, err = e.repo.GetSandbox(e.ctx, "")
	invalid = append(invalid, err)
	_, err = e.repo.GetPhaseResult(e.ctx, uuid.Nil)
	invalid = append(invalid, err)
	_, err = e.repo.GetAgentInvocation(e.ctx, uuid.Nil)
	invalid = append(invalid, err)
	_, err = e.repo.GetCTAEvent(e.ctx, tooLong)
	invalid = append(invalid, err)
	for i, err := range invalid {
		assert.ErrorIs(t, err, repository.ErrInvalidInput, "getter %d", i)
	}
}

// Timeline tests RunTimeline.
func Timeline(t *testing.T, open dbtest.Opener) {
	t.Run("NotFound", func(t *testing.T) {
		e := setup(t, open)
		_, err := e.repo.RunTimeline(e.ctx, uuid.New())
		require.ErrorIs(t, err, repository.ErrNotFound)
		_, err = e.repo.RunTimeline(e.ctx, uuid.Nil)
		require.ErrorIs(t, err, repository.ErrInvalidInput)
	})

	t.Run("EmptyRun", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		tl, err := e.repo.RunTimeline(e.ctx, run)
		require.NoError(t, err)
		assert.Equal(t, run, tl.Run.ID)
		assert.Empty(t, tl.Phases)
		assert.Empty(t, tl.Unphased)
		assert.Empty(t, tl.Sandboxes)
		assert.Empty(t, tl.CTAEvents)
	})

	t.Run("GroupedAndOrdered", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		other := e.newRun()
		e.newSandbox(other)
		var phases []uuid.UUID
		var wantAgents [][]string
		for p, name := range []string{"plan", "implement", "review"} {
			id, err := e.repo.CreatePhaseResult(e.ctx, repository.NewPhaseResult{ID: repository.StableID(run.String(), name), FeatureRunID: run, Phase: name})
			require.NoError(t, err)
			phases = append(phases, id)
			var agents []string
			for i := range p + 1 {
				agent := fmt.Sprintf("%s-agent-%d", name, i)
				_, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: run, PhaseResultID: &id, Agent: agent})
				require.NoError(t, err)
				agents = append(agents, agent)
			}
			wantAgents = append(wantAgents, agents)
		}
		_, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: run, Agent: "triage"})
		require.NoError(t, err)
		sandboxes := []string{e.newSandbox(run), e.newSandbox(run)}
		ctas := []string{e.newCTA(run), e.newCTA(run)}

		tl, err := e.repo.RunTimeline(e.ctx, run)
		require.NoError(t, err)
		require.Len(t, tl.Phases, 3)
		for i, p := range tl.Phases {
			assert.Equal(t, phases[i], p.ID, "phases in creation order")
			var agents []string
			for _, inv := range p.Invocations {
				agents = append(agents, inv.Agent)
			}
			assert.Equal(t, wantAgents[i], agents, "invocations under their phase, in order")
		}
		require.Len(t, tl.Unphased, 1)
		assert.Equal(t, "triage", tl.Unphased[0].Agent)
		var gotSandboxes, gotCTAs []string
		for _, s := range tl.Sandboxes {
			gotSandboxes = append(gotSandboxes, s.ID)
		}
		for _, c := range tl.CTAEvents {
			gotCTAs = append(gotCTAs, c.ID)
		}
		assert.Equal(t, sandboxes, gotSandboxes, "other runs' sandboxes are not included")
		assert.Equal(t, ctas, gotCTAs)
	})

	t.Run("FixedNumberOfQueries", func(t *testing.T) {
		e := setup(t, open)
		counts := map[int]int{}
		for _, n := range []int{1, 500} {
			run := e.newRun()
			phase := e.newPhase(run)
			for i := range n {
				var pid *uuid.UUID
				if i%2 == 0 {
					pid = &phase
				}
				_, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: run, PhaseResultID: pid, Agent: "a"})
				require.NoError(t, err)
			}
			rec := dbtest.RecorderOf(e.db)
			rec.Start()
			tl, err := e.repo.RunTimeline(e.ctx, run)
			stmts, _ := rec.Stop()
			require.NoError(t, err)
			assert.Len(t, tl.Phases[0].Invocations, (n+1)/2)
			assert.Len(t, tl.Unphased, n/2)
			counts[n] = len(stmts)
		}
		assert.Equal(t, counts[1], counts[500], "the same queries for 1 and 500 invocations")
		assert.LessOrEqual(t, counts[500], 5, "at most one query per table")
	})
}

// Usage tests RunUsage.
func Usage(t *testing.T, open dbtest.Opener) {
	t.Run("NotFoundAndEmpty", func(t *testing.T) {
		e := setup(t, open)
		_, err := e.repo.RunUsage(e.ctx, uuid.New())
		require.ErrorIs(t, err, repository.ErrNotFound)
		u, err := e.repo.RunUsage(e.ctx, e.newRun())
		require.NoError(t, err)
		assert.Equal(t, repository.Usage{}, u)
	})

	t.Run("SumsExactly", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		e.newInvocation(e.newRun()) // another run's usage is not counted
		agents := []string{"coder", "planner", "reviewer"}
		models := []string{"model-a", "model-b"}
		want := map[string]repository.UsageTotals{}
		var total repository.UsageTotals
		add := func(key string, in, out, cost int64) {
			g := want[key]
			g.Invocations++
			g.InputTokens += in
			g.OutputTokens += out
			g.CostNanoUSD += cost
			want[key] = g
		}
		for i := range 300 {
			agent, model := agents[i%3], models[i%2]
			id, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: run, Agent: agent, Model: model})
			require.NoError(t, err)
			// Costs such as $0.000000333 would drift as floats.
			in, out, cost := int64(1000+i), int64(7*i), int64(333+i*1_000_003)
			require.NoError(t, e.repo.CompleteAgentInvocation(e.ctx, id, repository.InvocationResult{InputTokens: in, OutputTokens: out, CostNanoUSD: cost}))
			add("agent:"+agent, in, out, cost)
			add("model:"+model, in, out, cost)
			total.Invocations++
			total.InputTokens += in
			total.OutputTokens += out
			total.CostNanoUSD += cost
		}
		u, err := e.repo.RunUsage(e.ctx, run)
		require.NoError(t, err)
		assert.Equal(t, total, u.UsageTotals)
		require.Len(t, u.ByAgent, 3)
		for i, g := range u.ByAgent {
			assert.Equal(t, agents[i], g.Key)
			assert.Equal(t, want["agent:"+g.Key], g.UsageTotals)
		}
		require.Len(t, u.ByModel, 2)
		for i, g := range u.ByModel {
			assert.Equal(t, models[i], g.Key)
			assert.Equal(t, want["model:"+g.Key], g.UsageTotals)
		}
		assert.Equal(t, total.InputTokens+total.OutputTokens, u.TotalTokens())
		assert.Equal(t, repository.FormatNanoUSD(total.CostNanoUSD), u.CostUSD())
	})
}
