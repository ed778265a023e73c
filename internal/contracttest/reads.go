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

	// Sub-agents nest under their parents, at any depth, for the same
	// queries as a flat run: 5 top-level invocations, each calling 3
	// sub-agents, each of which calls 32, 500 in all.
	t.Run("SubAgentTreeOf500InFixedQueries", func(t *testing.T) {
		e := setup(t, open)
		flat := e.newRun()
		e.newInvocation(flat)
		rec := dbtest.RecorderOf(e.db)
		rec.Start()
		_, err := e.repo.RunTimeline(e.ctx, flat)
		flatStmts, _ := rec.Stop()
		require.NoError(t, err)

		run := e.newRun()
		plan, implement := e.newPhase(run), e.newPhase(run)
		type node struct {
			agent    string
			children []node
		}
		var want []node // under the phase plan, then Unphased
		var unphased []node
		n := 0
		create := func(agent string, phase, parent *uuid.UUID) uuid.UUID {
			n++
			id, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{
				FeatureRunID: run, PhaseResultID: phase, ParentInvocationID: parent, Agent: agent,
			})
			require.NoError(t, err)
			return id
		}
		for r := range 5 {
			// Roots alternate between a phase and none; every sub-agent
			// records the implement phase, or none, yet is listed under
			// its parent.
			var rootPhase *uuid.UUID
			if r%2 == 0 {
				rootPhase = &plan
			}
			rootAgent := fmt.Sprintf("root-%d", r)
			root := create(rootAgent, rootPhase, nil)
			rn := node{agent: rootAgent}
			for c := range 3 {
				childAgent := fmt.Sprintf("%s/child-%d", rootAgent, c)
				child := create(childAgent, &implement, &root)
				cn := node{agent: childAgent}
				for g := range 32 {
					var gphase *uuid.UUID
					if g%2 == 0 {
						gphase = &implement
					}
					agent := fmt.Sprintf("%s/grandchild-%d", childAgent, g)
					create(agent, gphase, &child)
					cn.children = append(cn.children, node{agent: agent})
				}
				rn.children = append(rn.children, cn)
			}
			if rootPhase != nil {
				want = append(want, rn)
			} else {
				unphased = append(unphased, rn)
			}
		}
		require.Equal(t, 500, n)

		rec.Start()
		tl, err := e.repo.RunTimeline(e.ctx, run)
		stmts, _ := rec.Stop()
		require.NoError(t, err)
		assert.Len(t, stmts, len(flatStmts), "the same queries as a run of one invocation")
		assert.LessOrEqual(t, len(stmts), 5)

		var shape func(invs []repository.InvocationTimeline) []node
		shape = func(invs []repository.InvocationTimeline) []node {
			var out []node
			for _, inv := range invs {
				out = append(out, node{agent: inv.Agent, children: shape(inv.SubInvocations)})
			}
			return out
		}
		require.Len(t, tl.Phases, 2)
		assert.Equal(t, want, shape(tl.Phases[0].Invocations), "roots under their phase, sub-agents under their parents, in order")
		assert.Empty(t, tl.Phases[1].Invocations, "sub-agents are not listed under their own phase")
		assert.Equal(t, unphased, shape(tl.Unphased))
	})

	t.Run("SubAgentsOfAHandEditedCycle", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		a := e.newInvocation(run)
		b := e.subInvocation(run, a)
		c := e.subInvocation(run, b)
		// Closing the cycle takes an update, which the parent check lets
		// through: every parent is an invocation of the run.
		require.NoError(t, e.db.WithContext(e.ctx).Exec("UPDATE agent_invocations SET parent_invocation_id = ? WHERE id = ?", c.String(), a.String()).Error)
		tl, err := e.repo.RunTimeline(e.ctx, run)
		require.NoError(t, err)
		require.Len(t, tl.Unphased, 1, "the cycle is listed once, from its first invocation")
		top := tl.Unphased[0]
		assert.Equal(t, a, top.ID)
		require.Len(t, top.SubInvocations, 1)
		assert.Equal(t, b, top.SubInvocations[0].ID)
		require.Len(t, top.SubInvocations[0].SubInvocations, 1)
		assert.Equal(t, c, top.SubInvocations[0].SubInvocations[0].ID)
		assert.Empty(t, top.SubInvocations[0].SubInvocations[0].SubInvocations)
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
		// Sorted as the groups are; "" is the invocations without one.
		providers := []string{"", "anthropic", "openai", "vertex"}
		want := map[string]repository.UsageTotals{}
		var total repository.UsageTotals
		add := func(u *repository.UsageTotals, r repository.InvocationResult) {
			u.Invocations++
			u.InputTokens += r.InputTokens
			u.OutputTokens += r.OutputTokens
			u.CacheReadInputTokens += r.CacheReadInputTokens
			u.CacheWriteInputTokens += r.CacheWriteInputTokens
			u.ReasoningOutputTokens += r.ReasoningOutputTokens
			u.CostNanoUSD += r.CostNanoUSD
		}
		var parent *uuid.UUID
		for i := range 300 {
			agent, model, provider := agents[i%3], models[i%2], providers[i%4]
			// Sub-agents count as any invocation.
			id, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: run, ParentInvocationID: parent, Agent: agent, Model: model, Provider: provider})
			require.NoError(t, err)
			if i%5 == 0 {
				parent = &id
			}
			// Costs such as $0.000000333 would drift as floats.
			res := repository.InvocationResult{
				InputTokens: int64(1000 + i), OutputTokens: int64(7 * i), CostNanoUSD: int64(333 + i*1_000_003),
				CacheReadInputTokens: int64(500 + i), CacheWriteInputTokens: int64(i % 17), ReasoningOutputTokens: int64(3 * i),
			}
			require.NoError(t, e.repo.CompleteAgentInvocation(e.ctx, id, res))
			for _, key := range []string{"agent:" + agent, "model:" + model, "provider:" + provider} {
				g := want[key]
				add(&g, res)
				want[key] = g
			}
			add(&total, res)
		}
		u, err := e.repo.RunUsage(e.ctx, run)
		require.NoError(t, err)
		assert.Equal(t, total, u.UsageTotals)
		for _, dim := range []struct {
			name   string
			keys   []string
			groups []repository.UsageGroup
		}{{"agent", agents, u.ByAgent}, {"model", models, u.ByModel}, {"provider", providers, u.ByProvider}} {
			require.Len(t, dim.groups, len(dim.keys), dim.name)
			for i, g := range dim.groups {
				assert.Equal(t, dim.keys[i], g.Key, dim.name)
				assert.Equal(t, want[dim.name+":"+g.Key], g.UsageTotals, "%s %q", dim.name, g.Key)
			}
		}
		assert.Equal(t, total.InputTokens+total.OutputTokens, u.TotalTokens())
		assert.Equal(t, total.InputTokens-total.CacheReadInputTokens-total.CacheWriteInputTokens, u.UncachedInputTokens())
		assert.Equal(t, repository.FormatNanoUSD(total.CostNanoUSD), u.CostUSD())
	})
}
