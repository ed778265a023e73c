package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// The shape of every generated feature run. The seed varies what is written
// and a few choices (how the invocations spread over the phase attempts, who
// wins the raced CTA), never these counts.
const (
	// Phases is the number of pipeline phases a run goes through.
	Phases = 5
	// Invocations is the number of agent invocations of a run.
	Invocations = 20
	// Sandboxes is the number of sandboxes a run starts.
	Sandboxes = 2
	// CTAEvents is the number of calls to action of a run.
	CTAEvents = 3
	// Memories is the number of distinct memories a run ends with.
	Memories = 50
)

// phaseNames are the phases of a run, in order. The run starts in the first.
var phaseNames = [Phases]string{"plan", "design", "implement", "test", "review"}

// retriedPhase is the phase whose first attempt fails, when its sandbox
// fails under it, and is retried in the other sandbox.
const retriedPhase = "test"

// RunID returns the ID of the feature run that the workflow key records:
// repository.StableID of key and "run", as Generate derives it.
func RunID(key string) uuid.UUID { return repository.StableID(key, "run") }

// Generate returns the steps of one simulated feature run of the workflow
// key, in the order a durable workflow engine executes them. The same seed
// and key always give the same steps with the same data; IDs are derived
// with repository.StableID from key and the step, so two keys never share a
// row, and data depends on seed alone.
//
// The run goes through the phases plan, design, implement, test and review.
// Each phase is entered (UpdateFeatureRunPhase), gets a phase result per
// attempt (CreatePhaseResult, then PassPhaseResult or FailPhaseResult), runs
// agent invocations (CreateAgentInvocation with a provider and a start
// time, then CompleteAgentInvocation with steps, tool calls, tokens, cache
// and reasoning tokens, cost, the response's model, ID and finish reason,
// and for most a time to first token; 20 over the run) and appends the
// memories it learned (UpdateFeatureRunMemories; the run is created with 5
// and ends with 50, and appends repeat earlier values in other JSON forms).
// Sandbox 0 is created in implement and goes running, paused while a person
// is asked, running again and stopped at the end; sandbox 1 is created in
// test and goes running, then failed, which fails test's first attempt, so
// test is retried in sandbox 0. Design asks for an approval that is answered
// (CompleteCTAEvent), implement asks a question that times out
// (TimeoutCTAEvent), and review asks for a merge approval whose answer races
// its timeout: both steps are issued, in an order the seed picks. The run is
// then completed (CompleteFeatureRun), and a failure handler that fires late
// asks to fail it (FailFeatureRun).
//
// In each phase attempt the first invocation is the lead agent's, and
// every other one is a sub-agent: the second is called by the first, the
// third by the second, and the rest by one of those before them, so every
// run has sub-agents three levels deep. A sub-agent starts after its
// parent and ends before it: an attempt's invocations are created in
// order and completed in reverse.
//
// Steps are named as paths, entity first and action last, such as
// "run/create", "phase/test/1/fail" or "sandbox/0/pause"; Check keys its
// policy on these names, and says which errors each step may return, so run
// steps with Exec. There are 80 steps; their arguments are built by
// Generate, so that Run only makes its call, and each Run may be called any
// number of times, concurrently.
func Generate(seed int64, key string) []Step {
	g := &generator{
		rng:   rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)),
		key:   key,
		run:   RunID(key),
		steps: make([]Step, 0, 80),
	}
	g.generate(seed)
	return g.steps
}

type generator struct {
	rng *rand.Rand
	// topic varies the memories with the seed.
	topic int
	key   string
	run   uuid.UUID
	steps []Step
}

func (g *generator) add(name string, run func(ctx context.Context, s Store) error) {
	g.steps = append(g.steps, Step{Name: name, Run: run})
}

// sandboxID is the provider's ID of sandbox i. A real provider assigns it
// once; the workflow records it and replays with the recorded value, which
// is what deriving it from the key models.
func (g *generator) sandboxID(i int) string {
	return "sbx-" + repository.StableID(g.key, "sandbox", strconv.Itoa(i)).String()
}

func (g *generator) ctaID(name string) string {
	return "cta-" + repository.StableID(g.key, "cta", name).String()
}

func (g *generator) generate(seed int64) {
	g.topic = g.rng.IntN(len(words))
	memories := g.memories()
	run := g.run
	metadata := map[string]any{
		"feature":      fmt.Sprintf("feature-%d", g.rng.IntN(10_000)),
		"repository":   pick(g.rng, "acme/web", "acme/api", "acme/cli"),
		"requested_by": pick(g.rng, "ana", "bo", "chen", "dee"),
		"seed":         seed,
	}
	in := repository.NewFeatureRun{ID: run, Phase: phaseNames[0], Memories: memories[0], Metadata: metadata}
	g.add("run/create", func(ctx context.Context, s Store) error {
		_, err := s.CreateFeatureRun(ctx, in)
		return err
	})

	attempts := map[string]int{retriedPhase: 2}
	invocations := g.spread(attempts)
	provider := pick(g.rng, "e2b", "docker", "modal")
	base := time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(g.rng.IntN(1_000_000)) * time.Second)
	raceCompleteFirst := g.rng.IntN(2) == 0
	slot := 0
	for p, phase := range phaseNames {
		g.add("run/phase/"+phase, func(ctx context.Context, s Store) error {
			return s.UpdateFeatureRunPhase(ctx, run, phase)
		})
		switch phase {
		case "implement":
			g.createSandbox(0, provider, "dev")
			g.sandboxStatus(0, "start", models.SandboxRunning)
		case retriedPhase:
			g.createSandbox(1, provider, "test")
			g.sandboxStatus(1, "start", models.SandboxRunning)
		}
		for a := 1; a <= max(1, attempts[phase]); a++ {
			result := repository.StableID(g.key, "phase", phase, strconv.Itoa(a))
			prefix := "phase/" + phase + "/" + strconv.Itoa(a)
			g.add(prefix+"/create", func(ctx context.Context, s Store) error {
				_, err := s.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: result, FeatureRunID: run, Phase: phase})
				return err
			})
			g.invocations(phase, a, invocations[slot], result, base.Add(time.Duration(slot)*10*time.Minute))
			slot++
			if phase == "implement" {
				g.sandboxStatus(0, "pause", models.SandboxPaused)
				g.cta("clarify", "clarification", base.Add(-time.Hour), false)
				g.sandboxStatus(0, "resume", models.SandboxRunning)
			}
			if phase == retriedPhase && a == 1 {
				g.sandboxStatus(1, "fail", models.SandboxFailed)
				g.add(prefix+"/fail", func(ctx context.Context, s Store) error {
					return s.FailPhaseResult(ctx, result)
				})
				continue
			}
			output := map[string]any{
				"phase":     phase,
				"attempt":   a,
				"summary":   g.sentence(),
				"artifacts": g.rng.IntN(12),
			}
			g.add(prefix+"/pass", func(ctx context.Context, s Store) error {
				return s.PassPhaseResult(ctx, result, output)
			})
		}
		batch := memories[p+1]
		g.add("run/memories/"+phase, func(ctx context.Context, s Store) error {
			return s.UpdateFeatureRunMemories(ctx, run, batch)
		})
		switch phase {
		case "design":
			g.cta("approve-design", "approval", base.Add(24*time.Hour), true)
		case "review":
			g.racedCTA("approve-merge", base.Add(2*time.Hour), raceCompleteFirst)
			g.sandboxStatus(0, "stop", models.SandboxStopped)
		}
	}
	g.add("run/complete", func(ctx context.Context, s Store) error {
		return s.CompleteFeatureRun(ctx, run)
	})
	g.add("run/fail-late", func(ctx context.Context, s Store) error {
		return s.FailFeatureRun(ctx, run)
	})
}

// spread splits the run's invocations over the phase attempts, at least two
// each, the rest at random.
func (g *generator) spread(attempts map[string]int) []int {
	var slots []int
	for _, phase := range phaseNames {
		for range max(1, attempts[phase]) {
			slots = append(slots, 2)
		}
	}
	for range Invocations - 2*len(slots) {
		slots[g.rng.IntN(len(slots))]++
	}
	return slots
}

func (g *generator) createSandbox(i int, provider, purpose string) {
	in := repository.NewSandbox{
		ID:           g.sandboxID(i),
		FeatureRunID: g.run,
		Provider:     provider,
		Metadata: map[string]any{
			"purpose":   purpose,
			"image":     pick(g.rng, "node:22", "python:3.13", "golang:1.26"),
			"cpu":       1 + g.rng.IntN(4),
			"memory_mb": 1024 * (1 + g.rng.IntN(8)),
		},
	}
	g.add("sandbox/"+strconv.Itoa(i)+"/create", func(ctx context.Context, s Store) error {
		return s.CreateSandboxRecord(ctx, in)
	})
}

func (g *generator) sandboxStatus(i int, action string, status models.SandboxStatus) {
	id := g.sandboxID(i)
	g.add("sandbox/"+strconv.Itoa(i)+"/"+action, func(ctx context.Context, s Store) error {
		return s.UpdateSandboxStatus(ctx, id, status)
	})
}

// models the invocations run on, with their providers, their prices in
// billionths of a US dollar per input and per output token, and the
// finish reasons they report. A cache read costs a tenth of the input
// price and a cache write a quarter more, as Anthropic prices them.
var llms = []struct {
	name, provider, version string
	in, out                 int64
	// reasons says why the model stopped; reasoning says whether it
	// reports reasoning tokens.
	reasons   []string
	reasoning bool
}{
	{"claude-sonnet-4", "anthropic", "-20250514", 3_000, 15_000, []string{"end_turn", "tool_use", "max_tokens"}, true},
	{"claude-haiku-4", "anthropic", "-20251001", 800, 4_000, []string{"end_turn", "tool_use"}, false},
	{"gpt-4.1", "openai", "-2025-04-14", 2_000, 8_000, []string{"stop", "tool_calls", "length"}, false},
	{"o3", "openai", "-2025-04-16", 2_000, 8_000, []string{"stop", "tool_calls"}, true},
}

var agents = map[string][]string{
	"plan":      {"planner", "researcher"},
	"design":    {"architect", "reviewer"},
	"implement": {"coder", "coder", "linter"},
	"test":      {"tester", "coder"},
	"review":    {"reviewer", "security"},
}

// invocations adds the k invocations of a phase attempt: the lead agent's
// and its sub-agents', created in order from start on, and completed in
// reverse, so that each sub-agent ends before its caller.
func (g *generator) invocations(phase string, attempt, k int, result uuid.UUID, start time.Time) {
	ids := make([]uuid.UUID, k)
	var completes []Step
	for n := range k {
		ids[n] = repository.StableID(g.key, "invocation", phase, strconv.Itoa(attempt), strconv.Itoa(n))
		var parent *uuid.UUID
		switch {
		case n == 1, n == 2:
			parent = &ids[n-1]
		case n > 2:
			parent = &ids[g.rng.IntN(n)]
		}
		// Nanoseconds, which are stored truncated to the microsecond.
		started := start.Add(time.Duration(n)*7*time.Second + time.Duration(g.rng.IntN(1_000_000_000)))
		completes = append(completes, g.invocation(phase, attempt, n, ids[n], result, parent, started))
	}
	for i := len(completes) - 1; i >= 0; i-- {
		g.steps = append(g.steps, completes[i])
	}
}

// invocation adds the step that creates invocation n of a phase attempt,
// and returns the step that completes it.
func (g *generator) invocation(phase string, attempt, n int, id, result uuid.UUID, parent *uuid.UUID, started time.Time) Step {
	llm := llms[g.rng.IntN(len(llms))]
	in := repository.NewAgentInvocation{
		ID:                 id,
		FeatureRunID:       g.run,
		PhaseResultID:      &result,
		ParentInvocationID: parent,
		Agent:              pick(g.rng, agents[phase]...),
		Model:              llm.name,
		Provider:           llm.provider,
		StartedAt:          &started,
		Input:              map[string]any{"task": g.sentence(), "phase": phase, "attempt": attempt, "context_files": g.rng.IntN(30)},
	}
	var res repository.InvocationResult
	for i := range 1 + g.rng.IntN(6) {
		res.Steps = append(res.Steps, map[string]any{"n": i, "thought": g.sentence(), "action": pick(g.rng, "read", "edit", "run", "ask")})
	}
	for range g.rng.IntN(5) {
		res.ToolCalls = append(res.ToolCalls, map[string]any{
			"tool":        pick(g.rng, "bash", "read_file", "write_file", "search"),
			"args":        map[string]any{"path": fmt.Sprintf("src/file%d.go", g.rng.IntN(40))},
			"exit_code":   g.rng.IntN(2),
			"duration_ms": g.rng.IntN(5_000),
		})
	}
	res.Output = map[string]any{"summary": g.sentence(), "files_changed": g.rng.IntN(8)}
	// Token counts as the OpenTelemetry convention has them: the cache
	// counts are parts of the input, the reasoning count of the output.
	res.InputTokens = 500 + g.rng.Int64N(20_000)
	res.OutputTokens = 100 + g.rng.Int64N(4_000)
	res.CacheReadInputTokens = g.rng.Int64N(res.InputTokens)
	if llm.provider == "anthropic" {
		res.CacheWriteInputTokens = g.rng.Int64N(res.InputTokens - res.CacheReadInputTokens + 1)
	}
	if llm.reasoning {
		res.ReasoningOutputTokens = g.rng.Int64N(res.OutputTokens)
	}
	plain := res.InputTokens - res.CacheReadInputTokens - res.CacheWriteInputTokens
	res.CostNanoUSD = plain*llm.in + res.CacheReadInputTokens*llm.in/10 + res.CacheWriteInputTokens*llm.in*5/4 + res.OutputTokens*llm.out
	res.ResponseModel = llm.name + llm.version
	res.ProviderRequestID = fmt.Sprintf("req_%016x", g.rng.Uint64())
	res.FinishReason = pick(g.rng, llm.reasons...)
	if g.rng.IntN(4) > 0 { // streamed
		ttft := 80_000 + g.rng.Int64N(2_000_000)
		res.TimeToFirstTokenMicros = &ttft
	}
	prefix := "invocation/" + phase + "/" + strconv.Itoa(attempt) + "/" + strconv.Itoa(n)
	g.add(prefix+"/create", func(ctx context.Context, s Store) error {
		_, err := s.CreateAgentInvocation(ctx, in)
		return err
	})
	return Step{Name: prefix + "/complete", Run: func(ctx context.Context, s Store) error {
		return s.CompleteAgentInvocation(ctx, id, res)
	}}
}

// cta asks a person and records the answer, or the timeout when answered is
// false.
func (g *generator) cta(name, kind string, expires time.Time, answered bool) {
	id := g.createCTA(name, kind, expires)
	if !answered {
		g.add("cta/"+name+"/timeout", func(ctx context.Context, s Store) error {
			return s.TimeoutCTAEvent(ctx, id)
		})
		return
	}
	response := g.answer()
	g.add("cta/"+name+"/complete", func(ctx context.Context, s Store) error {
		return s.CompleteCTAEvent(ctx, id, response)
	})
}

// racedCTA asks a person whose answer and the timeout fire together: the
// answer handler and the timer are separate workflows, so both steps run,
// in the order completeFirst says, and the second loses.
func (g *generator) racedCTA(name string, expires time.Time, completeFirst bool) {
	id := g.createCTA(name, "approval", expires)
	response := g.answer()
	complete := Step{Name: "cta/" + name + "/complete-race", Run: func(ctx context.Context, s Store) error {
		return s.CompleteCTAEvent(ctx, id, response)
	}}
	timeout := Step{Name: "cta/" + name + "/timeout-race", Run: func(ctx context.Context, s Store) error {
		return s.TimeoutCTAEvent(ctx, id)
	}}
	if completeFirst {
		g.steps = append(g.steps, complete, timeout)
	} else {
		g.steps = append(g.steps, timeout, complete)
	}
}

func (g *generator) createCTA(name, kind string, expires time.Time) string {
	in := repository.NewCTAEvent{
		ID:           g.ctaID(name),
		FeatureRunID: g.run,
		Kind:         kind,
		RequestData:  map[string]any{"question": g.sentence() + "?", "options": []any{"yes", "no", "later"}},
		ExpiresAt:    expires,
	}
	g.add("cta/"+name+"/create", func(ctx context.Context, s Store) error {
		return s.CreateCTAEvent(ctx, in)
	})
	return in.ID
}

func (g *generator) answer() map[string]any {
	return map[string]any{"approved": g.rng.IntN(4) > 0, "comment": g.sentence()}
}

// memories returns the run's first memories and the batches each phase
// appends: Memories distinct values in all. Every batch after the first
// repeats a value of an earlier batch in another JSON form (reordered keys,
// spaces, another spelling of a number or an escape) and one of its own, so
// that appends exercise JSON equality rather than byte equality.
func (g *generator) memories() [Phases + 1][]any {
	const first = 5
	perPhase := (Memories - first) / Phases
	var batches [Phases + 1][]any
	var all []int
	next := 0
	for b := range batches {
		n := perPhase
		if b == 0 {
			n = first
		}
		for range n {
			batches[b] = append(batches[b], g.memory(next, false))
			all = append(all, next)
			next++
		}
		if b > 0 {
			earlier := all[g.rng.IntN(len(all)-n)]
			own := all[len(all)-1-g.rng.IntN(n)]
			batches[b] = append(batches[b], g.memory(earlier, true), g.memory(own, true))
			g.rng.Shuffle(len(batches[b]), func(i, j int) { batches[b][i], batches[b][j] = batches[b][j], batches[b][i] })
		}
	}
	return batches
}

// memory returns memory i, in its usual form or, when variant is true, in
// another form that is JSON-equal to it. The content of memory i depends on
// i and the seed only, so that both forms agree.
func (g *generator) memory(i int, variant bool) any {
	topic := words[(g.topic+i)%len(words)]
	confidence := float64(50+(g.topic*7+i)%50) / 100
	switch i % 3 {
	case 0:
		if variant {
			return json.RawMessage(fmt.Sprintf(`"fact \u0023%d: %s"`, i, topic))
		}
		return fmt.Sprintf("fact #%d: %s", i, topic)
	case 1:
		if variant {
			return json.RawMessage(fmt.Sprintf(`{ "confidence": %se0, "id": %d.0, "decision": "use %s" }`,
				strconv.FormatFloat(confidence, 'f', -1, 64), i, topic))
		}
		return map[string]any{"decision": "use " + topic, "id": i, "confidence": confidence}
	default:
		if variant {
			return json.RawMessage(fmt.Sprintf(`[ "file", "src/%s%d.go", %d ]`, topic, i, i*10))
		}
		return []any{"file", fmt.Sprintf("src/%s%d.go", topic, i), i * 10}
	}
}

var words = []string{
	"add", "cache", "refactor", "the", "handler", "for", "retries", "tests", "flaky", "schema",
	"migrate", "index", "queue", "timeout", "user", "session", "token", "budget", "agent", "plan",
}

func (g *generator) sentence() string {
	n := 3 + g.rng.IntN(6)
	b := make([]byte, 0, 8*n)
	for i := range n {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, words[g.rng.IntN(len(words))]...)
	}
	return string(b)
}

func pick[T any](rng *rand.Rand, options ...T) T { return options[rng.IntN(len(options))] }
