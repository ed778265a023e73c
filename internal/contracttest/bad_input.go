package contracttest

import (
	"context"
	"encoding/json"

	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/canonjson"
	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// Awkward inputs shared by the cases below.
var (
	tooLong     = strings.Repeat("x", repository.MaxNameBytes+1)
	longest     = strings.Repeat("é", repository.MaxNameBytes/2) + "x"
	badUTF8     = "bad \xc3\x28 text"
	withNUL     = "nul \x00 byte"
	injection   = `'; DROP TABLE feature_runs; --`
	unencodable = map[string]any{"ch": make(chan int)}
)

// badCase is one call that must be refused with wantErr and must not touch
// the database, naming field in its error.
type badCase struct {
	name  string
	field string
	call  func(ctx context.Context, r *repository.Repository, f fixture) error
}

func badCases() []badCase {
	zero := uuid.Nil
	deep := any("leaf")
	for range 10_000 {
		deep = []any{deep}
	}
	// huge is over canonjson.MaxBytes on its own; half is under it, but two
	// distinct halves in one array are not.
	huge := strings.Repeat("x", 16<<20)
	half := strings.Repeat("y", 5<<20)
	halfToo := strings.Repeat("z", 5<<20)
	type run = repository.NewFeatureRun
	type sbx = repository.NewSandbox
	type phase = repository.NewPhaseResult
	type inv = repository.NewAgentInvocation
	type cta = repository.NewCTAEvent
	type res = repository.InvocationResult
	createRun := func(in run) func(context.Context, *repository.Repository, fixture) error {
		return func(ctx context.Context, r *repository.Repository, _ fixture) error {
			_, err := r.CreateFeatureRun(ctx, in)
			return err
		}
	}
	createSandbox := func(in func(f fixture) sbx) func(context.Context, *repository.Repository, fixture) error {
		return func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.CreateSandboxRecord(ctx, in(f))
		}
	}
	createPhase := func(in func(f fixture) phase) func(context.Context, *repository.Repository, fixture) error {
		return func(ctx context.Context, r *repository.Repository, f fixture) error {
			_, err := r.CreatePhaseResult(ctx, in(f))
			return err
		}
	}
	createInv := func(in func(f fixture) inv) func(context.Context, *repository.Repository, fixture) error {
		return func(ctx context.Context, r *repository.Repository, f fixture) error {
			_, err := r.CreateAgentInvocation(ctx, in(f))
			return err
		}
	}
	createCTA := func(in func(f fixture) cta) func(context.Context, *repository.Repository, fixture) error {
		return func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.CreateCTAEvent(ctx, in(f))
		}
	}
	complete := func(in res) func(context.Context, *repository.Repository, fixture) error {
		return func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.CompleteAgentInvocation(ctx, f.invocation, in)
		}
	}
	memories := func(v ...any) func(context.Context, *repository.Repository, fixture) error {
		return func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.UpdateFeatureRunMemories(ctx, f.run, v)
		}
	}
	pass := func(v any) func(context.Context, *repository.Repository, fixture) error {
		return func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.PassPhaseResult(ctx, f.phase, v)
		}
	}
	respond := func(v any) func(context.Context, *repository.Repository, fixture) error {
		return func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.CompleteCTAEvent(ctx, f.cta, v)
		}
	}

	return []badCase{
		{"run empty phase", "NewFeatureRun.Phase", createRun(run{Phase: ""})},
		{"run long phase", "NewFeatureRun.Phase", createRun(run{Phase: tooLong})},
		{"run phase bad UTF-8", "NewFeatureRun.Phase", createRun(run{Phase: badUTF8})},
		{"run phase NUL", "NewFeatureRun.Phase", createRun(run{Phase: withNUL})},
		{"run memory unencodable", "NewFeatureRun.Memories[1]", createRun(run{Phase: "p", Memories: []any{"ok", unencodable}})},
		{"run memory NaN", "NewFeatureRun.Memories[0]", createRun(run{Phase: "p", Memories: []any{math.NaN()}})},
		{"run metadata bad UTF-8", "NewFeatureRun.Metadata", createRun(run{Phase: "p", Metadata: map[string]any{"k": badUTF8}})},
		{"run metadata bad UTF-8 key", "NewFeatureRun.Metadata", createRun(run{Phase: "p", Metadata: map[string]any{badUTF8: 1}})},
		{"run metadata NUL", "NewFeatureRun.Metadata", createRun(run{Phase: "p", Metadata: []any{withNUL}})},
		{"run metadata raw \\u0000", "NewFeatureRun.Metadata", createRun(run{Phase: "p", Metadata: json.RawMessage(`{"a":"\u0000"}`)})},
		{"run metadata too deep", "NewFeatureRun.Metadata", createRun(run{Phase: "p", Metadata: deep})},
		{"run metadata 16 MiB", "NewFeatureRun.Metadata", createRun(run{Phase: "p", Metadata: huge})},
		{"run metadata unencodable", "NewFeatureRun.Metadata", createRun(run{Phase: "p", Metadata: unencodable})},
		{"run memory bad UTF-8", "NewFeatureRun.Memories[0]", createRun(run{Phase: "p", Memories: []any{badUTF8}})},
		{"run memory NUL", "NewFeatureRun.Memories[1]", createRun(run{Phase: "p", Memories: []any{"ok", withNUL}})},
		{"run memory too deep", "NewFeatureRun.Memories[0]", createRun(run{Phase: "p", Memories: []any{deep}})},
		{"run memory 16 MiB", "NewFeatureRun.Memories[0]", createRun(run{Phase: "p", Memories: []any{huge}})},
		{"run memories over 8 MiB in all", "NewFeatureRun.Memories", createRun(run{Phase: "p", Memories: []any{half, halfToo}})},

		{"phase zero run", "runID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.UpdateFeatureRunPhase(ctx, zero, "p")
		}},
		{"phase empty", "phase", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.UpdateFeatureRunPhase(ctx, f.run, "")
		}},
		{"phase too long", "phase", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.UpdateFeatureRunPhase(ctx, f.run, tooLong)
		}},
		{"phase bad UTF-8", "phase", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.UpdateFeatureRunPhase(ctx, f.run, badUTF8)
		}},
		{"phase NUL", "phase", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.UpdateFeatureRunPhase(ctx, f.run, withNUL)
		}},

		{"memories zero run", "runID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.UpdateFeatureRunMemories(ctx, zero, []any{"m"})
		}},
		{"memories unencodable", "memories[0]", memories(func() {})},
		{"memories Inf", "memories[1]", memories("ok", math.Inf(1))},
		{"memories bad UTF-8", "memories[0]", memories(map[string]any{"text": badUTF8})},
		{"memories NUL", "memories[2]", memories("a", "b", withNUL)},
		{"memories raw invalid JSON", "memories[0]", memories(json.RawMessage(`{"a":`))},
		{"memories too deep", "memories[0]", memories(deep)},
		{"memories lone surrogate", "memories[1]", memories("ok", json.RawMessage(`"\ud800"`))},
		{"memories 16 MiB", "memories[0]", memories(huge)},
		{"memories over 8 MiB in all", "memories", memories(half, halfToo)},

		{"complete run zero", "runID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.CompleteFeatureRun(ctx, zero)
		}},
		{"fail run zero", "runID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.FailFeatureRun(ctx, zero)
		}},
		{"fail run message bad UTF-8", "message", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.FailFeatureRunWithError(ctx, f.run, badUTF8)
		}},
		{"fail run message NUL", "message", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.FailFeatureRunWithError(ctx, f.run, withNUL)
		}},
		{"fail run message too long", "message", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.FailFeatureRunWithError(ctx, f.run, strings.Repeat("m", repository.MaxMessageBytes+1))
		}},

		{"sandbox empty ID", "NewSandbox.ID", createSandbox(func(f fixture) sbx { return sbx{FeatureRunID: f.run} })},
		{"sandbox long ID", "NewSandbox.ID", createSandbox(func(f fixture) sbx { return sbx{ID: tooLong, FeatureRunID: f.run} })},
		{"sandbox ID NUL", "NewSandbox.ID", createSandbox(func(f fixture) sbx { return sbx{ID: withNUL, FeatureRunID: f.run} })},
		{"sandbox zero run", "NewSandbox.FeatureRunID", createSandbox(func(fixture) sbx { return sbx{ID: "s"} })},
		{"sandbox long provider", "NewSandbox.Provider", createSandbox(func(f fixture) sbx { return sbx{ID: "s", FeatureRunID: f.run, Provider: tooLong} })},
		{"sandbox metadata unencodable", "NewSandbox.Metadata", createSandbox(func(f fixture) sbx { return sbx{ID: "s", FeatureRunID: f.run, Metadata: unencodable} })},
		{"sandbox ID bad UTF-8", "NewSandbox.ID", createSandbox(func(f fixture) sbx { return sbx{ID: badUTF8, FeatureRunID: f.run} })},
		{"sandbox provider bad UTF-8", "NewSandbox.Provider", createSandbox(func(f fixture) sbx { return sbx{ID: "s", FeatureRunID: f.run, Provider: badUTF8} })},
		{"sandbox provider NUL", "NewSandbox.Provider", createSandbox(func(f fixture) sbx { return sbx{ID: "s", FeatureRunID: f.run, Provider: withNUL} })},
		{"sandbox metadata too deep", "NewSandbox.Metadata", createSandbox(func(f fixture) sbx { return sbx{ID: "s", FeatureRunID: f.run, Metadata: deep} })},
		{"sandbox metadata 16 MiB", "NewSandbox.Metadata", createSandbox(func(f fixture) sbx { return sbx{ID: "s", FeatureRunID: f.run, Metadata: huge} })},
		{"sandbox metadata NaN", "NewSandbox.Metadata", createSandbox(func(f fixture) sbx {
			return sbx{ID: "s", FeatureRunID: f.run, Metadata: map[string]any{"cpu": math.NaN()}}
		})},

		{"sandbox status unknown", "status", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.UpdateSandboxStatus(ctx, f.sandbox, "exploded")
		}},
		{"sandbox status empty", "status", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.UpdateSandboxStatus(ctx, f.sandbox, "")
		}},
		{"sandbox status empty ID", "sandboxID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.UpdateSandboxStatus(ctx, "", models.SandboxRunning)
		}},
		{"sandbox status bad UTF-8 ID", "sandboxID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.UpdateSandboxStatus(ctx, badUTF8, models.SandboxRunning)
		}},
		{"sandbox status long ID", "sandboxID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.UpdateSandboxStatus(ctx, tooLong, models.SandboxRunning)
		}},
		{"sandbox status NUL ID", "sandboxID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.UpdateSandboxStatus(ctx, withNUL, models.SandboxRunning)
		}},
		{"sandbox status wrong case", "status", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.UpdateSandboxStatus(ctx, f.sandbox, "Running")
		}},
		{"sandbox status NUL", "status", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.UpdateSandboxStatus(ctx, f.sandbox, models.SandboxRunning+"\x00")
		}},

		{"phase result zero run", "NewPhaseResult.FeatureRunID", createPhase(func(fixture) phase { return phase{Phase: "p"} })},
		{"phase result empty phase", "NewPhaseResult.Phase", createPhase(func(f fixture) phase { return phase{FeatureRunID: f.run} })},
		{"phase result long phase", "NewPhaseResult.Phase", createPhase(func(f fixture) phase { return phase{FeatureRunID: f.run, Phase: tooLong} })},
		{"phase result phase bad UTF-8", "NewPhaseResult.Phase", createPhase(func(f fixture) phase { return phase{FeatureRunID: f.run, Phase: badUTF8} })},
		{"phase result phase NUL", "NewPhaseResult.Phase", createPhase(func(f fixture) phase { return phase{FeatureRunID: f.run, Phase: withNUL} })},
		{"pass zero ID", "phaseResultID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.PassPhaseResult(ctx, zero, "out")
		}},
		{"pass output unencodable", "output", pass(unencodable)},
		{"pass output bad UTF-8", "output", pass([]string{badUTF8})},
		{"pass output NUL", "output", pass(struct{ S string }{withNUL})},
		{"pass output too deep", "output", pass(deep)},
		{"pass output 16 MiB", "output", pass(huge)},
		{"pass output Inf", "output", pass([]float64{math.Inf(-1)})},
		{"fail phase zero ID", "phaseResultID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.FailPhaseResult(ctx, zero)
		}},
		{"fail phase message too long", "message", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.FailPhaseResultWithError(ctx, f.phase, strings.Repeat("m", repository.MaxMessageBytes+1))
		}},

		{"invocation zero run", "NewAgentInvocation.FeatureRunID", createInv(func(fixture) inv { return inv{Agent: "a"} })},
		{"invocation zero phase", "NewAgentInvocation.PhaseResultID", createInv(func(f fixture) inv { return inv{FeatureRunID: f.run, PhaseResultID: &zero, Agent: "a"} })},
		{"invocation empty agent", "NewAgentInvocation.Agent", createInv(func(f fixture) inv { return inv{FeatureRunID: f.run} })},
		{"invocation long agent", "NewAgentInvocation.Agent", createInv(func(f fixture) inv { return inv{FeatureRunID: f.run, Agent: tooLong} })},
		{"invocation long model", "NewAgentInvocation.Model", createInv(func(f fixture) inv { return inv{FeatureRunID: f.run, Agent: "a", Model: tooLong} })},
		{"invocation input bad UTF-8", "NewAgentInvocation.Input", createInv(func(f fixture) inv { return inv{FeatureRunID: f.run, Agent: "a", Input: badUTF8} })},
		{"invocation agent NUL", "NewAgentInvocation.Agent", createInv(func(f fixture) inv { return inv{FeatureRunID: f.run, Agent: withNUL} })},
		{"invocation agent bad UTF-8", "NewAgentInvocation.Agent", createInv(func(f fixture) inv { return inv{FeatureRunID: f.run, Agent: badUTF8} })},
		{"invocation model bad UTF-8", "NewAgentInvocation.Model", createInv(func(f fixture) inv { return inv{FeatureRunID: f.run, Agent: "a", Model: badUTF8} })},
		{"invocation model NUL", "NewAgentInvocation.Model", createInv(func(f fixture) inv { return inv{FeatureRunID: f.run, Agent: "a", Model: withNUL} })},
		{"invocation input unencodable", "NewAgentInvocation.Input", createInv(func(f fixture) inv { return inv{FeatureRunID: f.run, Agent: "a", Input: unencodable} })},
		{"invocation input too deep", "NewAgentInvocation.Input", createInv(func(f fixture) inv { return inv{FeatureRunID: f.run, Agent: "a", Input: deep} })},
		{"invocation input 16 MiB", "NewAgentInvocation.Input", createInv(func(f fixture) inv { return inv{FeatureRunID: f.run, Agent: "a", Input: huge} })},
		{"invocation zero parent", "NewAgentInvocation.ParentInvocationID", createInv(func(f fixture) inv {
			return inv{FeatureRunID: f.run, ParentInvocationID: &zero, Agent: "a"}
		})},
		{"invocation its own parent", "NewAgentInvocation.ParentInvocationID", createInv(func(f fixture) inv {
			return inv{ID: f.invocation, FeatureRunID: f.run, ParentInvocationID: &f.invocation, Agent: "a"}
		})},
		{"invocation long provider", "NewAgentInvocation.Provider", createInv(func(f fixture) inv { return inv{FeatureRunID: f.run, Agent: "a", Provider: tooLong} })},
		{"invocation provider NUL", "NewAgentInvocation.Provider", createInv(func(f fixture) inv { return inv{FeatureRunID: f.run, Agent: "a", Provider: withNUL} })},
		{"invocation provider bad UTF-8", "NewAgentInvocation.Provider", createInv(func(f fixture) inv { return inv{FeatureRunID: f.run, Agent: "a", Provider: badUTF8} })},
		{"invocation started at the zero time", "NewAgentInvocation.StartedAt", createInv(func(f fixture) inv {
			return inv{FeatureRunID: f.run, Agent: "a", StartedAt: &time.Time{}}
		})},
		{"invocation started in year 10000", "NewAgentInvocation.StartedAt", createInv(func(f fixture) inv {
			return inv{FeatureRunID: f.run, Agent: "a", StartedAt: ptr(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))}
		})},

		{"complete invocation zero ID", "invocationID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.CompleteAgentInvocation(ctx, zero, res{})
		}},
		{"complete invocation steps unencodable", "InvocationResult.Steps", complete(res{Steps: []any{unencodable}})},
		{"complete invocation tool calls NUL", "InvocationResult.ToolCalls", complete(res{ToolCalls: []any{withNUL}})},
		{"complete invocation output bad UTF-8", "InvocationResult.Output", complete(res{Output: badUTF8})},
		{"complete invocation negative tokens", "InvocationResult.InputTokens", complete(res{InputTokens: -1})},
		{"complete invocation negative output tokens", "InvocationResult.OutputTokens", complete(res{OutputTokens: -1})},
		{"complete invocation negative cost", "InvocationResult.CostNanoUSD", complete(res{CostNanoUSD: -5})},
		{"complete invocation steps 16 MiB", "InvocationResult.Steps", complete(res{Steps: []any{huge}})},
		{"complete invocation steps bad UTF-8", "InvocationResult.Steps", complete(res{Steps: []any{map[string]any{"thought": badUTF8}}})},
		{"complete invocation tool calls too deep", "InvocationResult.ToolCalls", complete(res{ToolCalls: []any{deep}})},
		{"complete invocation tool calls unencodable", "InvocationResult.ToolCalls", complete(res{ToolCalls: []any{unencodable}})},
		{"complete invocation output 16 MiB", "InvocationResult.Output", complete(res{Output: huge})},
		{"complete invocation output unencodable", "InvocationResult.Output", complete(res{Output: unencodable})},
		{"complete invocation output NUL", "InvocationResult.Output", complete(res{Output: map[string]string{withNUL: "k"}})},
		{"complete invocation negative cache reads", "InvocationResult.CacheReadInputTokens", complete(res{InputTokens: 5, CacheReadInputTokens: -1})},
		{"complete invocation negative cache writes", "InvocationResult.CacheWriteInputTokens", complete(res{InputTokens: 5, CacheWriteInputTokens: -1})},
		{"complete invocation negative reasoning", "InvocationResult.ReasoningOutputTokens", complete(res{OutputTokens: 5, ReasoningOutputTokens: -1})},
		{"complete invocation cache reads beyond input", "InvocationResult.CacheReadInputTokens", complete(res{InputTokens: 100, CacheReadInputTokens: 101})},
		{"complete invocation cache writes beyond input", "InvocationResult.CacheWriteInputTokens", complete(res{InputTokens: 100, CacheWriteInputTokens: 101})},
		{"complete invocation cache reads and writes beyond input", "InvocationResult.CacheWriteInputTokens", complete(res{InputTokens: 100, CacheReadInputTokens: 60, CacheWriteInputTokens: 41})},
		{"complete invocation cache as Anthropic counts it", "InvocationResult.CacheReadInputTokens", complete(res{InputTokens: 12, CacheReadInputTokens: 5_000, OutputTokens: 300})},
		{"complete invocation cache reads at the int64 limit", "InvocationResult.CacheWriteInputTokens", complete(res{InputTokens: math.MaxInt64, CacheReadInputTokens: math.MaxInt64, CacheWriteInputTokens: 1})},
		{"complete invocation reasoning beyond output", "InvocationResult.ReasoningOutputTokens", complete(res{OutputTokens: 10, ReasoningOutputTokens: 11})},
		{"complete invocation negative time to first token", "InvocationResult.TimeToFirstTokenMicros", complete(res{TimeToFirstTokenMicros: ptr[int64](-1)})},
		{"complete invocation long response model", "InvocationResult.ResponseModel", complete(res{ResponseModel: tooLong})},
		{"complete invocation response model NUL", "InvocationResult.ResponseModel", complete(res{ResponseModel: withNUL})},
		{"complete invocation request ID bad UTF-8", "InvocationResult.ProviderRequestID", complete(res{ProviderRequestID: badUTF8})},
		{"complete invocation long request ID", "InvocationResult.ProviderRequestID", complete(res{ProviderRequestID: tooLong})},
		{"complete invocation finish reason NUL", "InvocationResult.FinishReason", complete(res{FinishReason: withNUL})},
		{"complete invocation long finish reason", "InvocationResult.FinishReason", complete(res{FinishReason: tooLong})},
		{"fail invocation reasoning beyond output", "InvocationResult.ReasoningOutputTokens", func(ctx context.Context, r *repository.Repository, f fixture) error {
			return r.FailAgentInvocation(ctx, f.invocation, res{ReasoningOutputTokens: 1}, "boom")
		}},

		{"CTA empty ID", "NewCTAEvent.ID", createCTA(func(f fixture) cta { return cta{FeatureRunID: f.run} })},
		{"CTA long ID", "NewCTAEvent.ID", createCTA(func(f fixture) cta { return cta{ID: tooLong, FeatureRunID: f.run} })},
		{"CTA zero run", "NewCTAEvent.FeatureRunID", createCTA(func(fixture) cta { return cta{ID: "c"} })},
		{"CTA long kind", "NewCTAEvent.Kind", createCTA(func(f fixture) cta { return cta{ID: "c", FeatureRunID: f.run, Kind: tooLong} })},
		{"CTA request NUL", "NewCTAEvent.RequestData", createCTA(func(f fixture) cta { return cta{ID: "c", FeatureRunID: f.run, RequestData: withNUL} })},
		{"CTA ID bad UTF-8", "NewCTAEvent.ID", createCTA(func(f fixture) cta { return cta{ID: badUTF8, FeatureRunID: f.run} })},
		{"CTA ID NUL", "NewCTAEvent.ID", createCTA(func(f fixture) cta { return cta{ID: withNUL, FeatureRunID: f.run} })},
		{"CTA kind bad UTF-8", "NewCTAEvent.Kind", createCTA(func(f fixture) cta { return cta{ID: "c", FeatureRunID: f.run, Kind: badUTF8} })},
		{"CTA kind NUL", "NewCTAEvent.Kind", createCTA(func(f fixture) cta { return cta{ID: "c", FeatureRunID: f.run, Kind: withNUL} })},
		{"CTA request too deep", "NewCTAEvent.RequestData", createCTA(func(f fixture) cta { return cta{ID: "c", FeatureRunID: f.run, RequestData: deep} })},
		{"CTA request 16 MiB", "NewCTAEvent.RequestData", createCTA(func(f fixture) cta { return cta{ID: "c", FeatureRunID: f.run, RequestData: huge} })},
		{"CTA request unencodable", "NewCTAEvent.RequestData", createCTA(func(f fixture) cta { return cta{ID: "c", FeatureRunID: f.run, RequestData: unencodable} })},
		{"CTA respond empty ID", "ctaID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.CompleteCTAEvent(ctx, "", "yes")
		}},
		{"CTA response unencodable", "responseData", respond(unencodable)},
		{"CTA response bad UTF-8", "responseData", respond(map[string]string{"answer": badUTF8})},
		{"CTA response too deep", "responseData", respond(deep)},
		{"CTA response 16 MiB", "responseData", respond(huge)},
		{"CTA respond long ID", "ctaID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.CompleteCTAEvent(ctx, tooLong, "yes")
		}},
		{"CTA respond NUL ID", "ctaID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.CompleteCTAEvent(ctx, withNUL, "yes")
		}},
		{"CTA timeout long ID", "ctaID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.TimeoutCTAEvent(ctx, tooLong)
		}},
		{"CTA timeout empty ID", "ctaID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.TimeoutCTAEvent(ctx, "")
		}},
		{"CTA timeout NUL ID", "ctaID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.TimeoutCTAEvent(ctx, withNUL)
		}},
		{"CTA timeout bad UTF-8 ID", "ctaID", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.TimeoutCTAEvent(ctx, badUTF8)
		}},

		// Numbers past the limits Edges stores: beyond float64, rounding to
		// zero in it, too long a fraction, too long on PostgreSQL.
		{"pass output 1e309", "output", pass(json.RawMessage(`1e309`))},
		{"pass output 1e399 in an object", "output", pass(json.RawMessage(`{"big":1e399}`))},
		{"pass output rounds to -Inf", "output", pass(json.RawMessage(`[-1.7976931348623159e308]`))},
		{"pass output 1e-400", "output", pass(json.RawMessage(`1e-400`))},
		{"pass output rounds to 0", "output", pass(json.RawMessage(`[2.4703282292062327e-324]`))},
		{"pass output 16384 fraction digits", "output", pass(json.RawMessage("0." + strings.Repeat("1", canonjson.MaxFractionDigits+1)))},
		{"pass output past the expansion bound", "output", pass(atExpansionLimit(234))},
		{"pass output 7,000,001 bytes of 1e+399", "output", pass(json.RawMessage(manyNumbers("1e+399")))},
		{"pass output 7,000,001 bytes of 1e+308", "output", pass(json.RawMessage(manyNumbers("1e+308")))},
		{"pass output json.Number 1e309", "output", pass(map[string]any{"n": json.Number("1e309")})},
		{"run metadata 1e309", "NewFeatureRun.Metadata", createRun(run{Phase: "p", Metadata: json.RawMessage(`{"a":1e309}`)})},
		{"run memory 1e-400", "NewFeatureRun.Memories[1]", createRun(run{Phase: "p", Memories: []any{"ok", json.RawMessage(`1e-400`)}})},
		{"run memories past the expansion bound in all", "NewFeatureRun.Memories", createRun(run{Phase: "p", Memories: distinctBigNumbers()})},
		{"memories 1e399", "memories[1]", memories("ok", json.RawMessage(`1e399`))},
		{"memories past the expansion bound in all", "memories", memories(distinctBigNumbers()...)},
		{"sandbox metadata 1e309", "NewSandbox.Metadata", createSandbox(func(f fixture) sbx {
			return sbx{ID: "s", FeatureRunID: f.run, Metadata: json.RawMessage(`1e309`)}
		})},
		{"invocation input 1e-400", "NewAgentInvocation.Input", createInv(func(f fixture) inv { return inv{FeatureRunID: f.run, Agent: "a", Input: json.RawMessage(`[1e-400]`)} })},
		{"complete invocation steps 1e309", "InvocationResult.Steps", complete(res{Steps: []any{json.RawMessage(`1e309`)}})},
		{"complete invocation output 16384 fraction digits", "InvocationResult.Output", complete(res{Output: json.RawMessage("-0." + strings.Repeat("9", canonjson.MaxFractionDigits+1))})},
		{"CTA request 1e-400", "NewCTAEvent.RequestData", createCTA(func(f fixture) cta { return cta{ID: "c", FeatureRunID: f.run, RequestData: json.RawMessage(`1e-400`)} })},
		{"CTA response past the expansion bound", "responseData", respond(atExpansionLimit(234))},

		// Invalid UTF-8 that encoding/json would replace, beside the escape
		// \ufffd that is a real U+FFFD and is stored.
		{"pass output bad UTF-8 beside escaped U+FFFD", "output", pass([]any{json.RawMessage(`"\ufffd"`), badUTF8})},
		{"run metadata bad UTF-8 key beside escaped U+FFFD", "NewFeatureRun.Metadata", createRun(run{Phase: "p", Metadata: map[string]any{badUTF8: json.RawMessage(`"\ufffd"`)}})},
		{"memories bad UTF-8 field beside escaped U+FFFD", "memories[0]", memories(struct {
			Raw  json.RawMessage
			Text string
		}{json.RawMessage(`"\ufffd"`), badUTF8})},
		{"complete invocation output bad UTF-8 text beside escaped U+FFFD", "InvocationResult.Output", complete(res{Output: []any{jsonText(`"\ufffd"`), textValue(badUTF8)}})},
		{"CTA response Marshaler with raw bad UTF-8", "responseData", respond(jsonText(`"` + badUTF8 + `"`))},
	}
}

// manyNumbers is 7,000,001 bytes of JSON: an array of 1,000,000 copies of
// the 6-byte number n.
func manyNumbers(n string) string {
	return "[" + strings.Repeat(n+",", 999_999) + n + "]"
}

// distinctBigNumbers are 20 distinct numbers, each within the bound on
// PostgreSQL's text alone (295 bytes longer written out) but not together.
func distinctBigNumbers() []any {
	var vs []any
	for i := range 20 {
		vs = append(vs, json.RawMessage(strconv.Itoa(i+1)+"e300"))
	}
	return vs
}

// notFoundCases are calls that name a row, or a parent row, that does not
// exist: one per write that names one. Each must return ErrNotFound and
// change nothing.
func notFoundCases() []write {
	missingRun := repository.StableID("missing", "run")
	missingPhase := repository.StableID("missing", "phase result")
	missingInvocation := repository.StableID("missing", "invocation")
	const missingSandbox, missingCTA = "sbx-missing", "cta-missing"
	return []write{
		{"UpdateFeatureRunPhase", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.UpdateFeatureRunPhase(ctx, missingRun, "implement")
		}},
		{"UpdateFeatureRunMemories", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.UpdateFeatureRunMemories(ctx, missingRun, []any{"m"})
		}},
		{"CompleteFeatureRun", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.CompleteFeatureRun(ctx, missingRun)
		}},
		{"FailFeatureRun", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.FailFeatureRun(ctx, missingRun)
		}},
		{"CreateSandboxRecord missing run", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.CreateSandboxRecord(ctx, repository.NewSandbox{ID: "sbx-orphan", FeatureRunID: missingRun})
		}},
		{"UpdateSandboxStatus", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.UpdateSandboxStatus(ctx, missingSandbox, models.SandboxRunning)
		}},
		{"CreatePhaseResult missing run", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			_, err := r.CreatePhaseResult(ctx, repository.NewPhaseResult{ID: uuid.New(), FeatureRunID: missingRun, Phase: "plan"})
			return err
		}},
		{"PassPhaseResult", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.PassPhaseResult(ctx, missingPhase, "out")
		}},
		{"FailPhaseResult", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.FailPhaseResult(ctx, missingPhase)
		}},
		{"CreateAgentInvocation missing run", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			_, err := r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{ID: uuid.New(), FeatureRunID: missingRun, Agent: "coder"})
			return err
		}},
		{"CreateAgentInvocation missing phase result", func(ctx context.Context, r *repository.Repository, f fixture) error {
			_, err := r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{ID: uuid.New(), FeatureRunID: f.run, PhaseResultID: &missingPhase, Agent: "coder"})
			return err
		}},
		{"CreateAgentInvocation missing parent invocation", func(ctx context.Context, r *repository.Repository, f fixture) error {
			_, err := r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{ID: uuid.New(), FeatureRunID: f.run, ParentInvocationID: &missingInvocation, Agent: "coder"})
			return err
		}},
		{"CompleteAgentInvocation", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.CompleteAgentInvocation(ctx, missingInvocation, repository.InvocationResult{})
		}},
		{"CreateCTAEvent missing run", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: "cta-orphan", FeatureRunID: missingRun})
		}},
		{"CompleteCTAEvent", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.CompleteCTAEvent(ctx, missingCTA, "yes")
		}},
		{"TimeoutCTAEvent", func(ctx context.Context, r *repository.Repository, _ fixture) error {
			return r.TimeoutCTAEvent(ctx, missingCTA)
		}},
	}
}

// BadInput tests that invalid arguments are refused with an *InputError
// naming the field before the database is touched, and that awkward but
// valid input is stored verbatim.
func BadInput(t *testing.T, open dbtest.Opener) {
	t.Run("Refused", func(t *testing.T) {
		e := setup(t, open)
		f := e.fixture()
		before := e.snapshot()
		rec := dbtest.RecorderOf(e.db)
		for _, c := range badCases() {
			rec.Start()
			err := c.call(e.ctx, e.repo, f)
			stmts, _ := rec.Stop()
			require.ErrorIs(t, err, repository.ErrInvalidInput, c.name)
			var ierr *repository.InputError
			require.ErrorAs(t, err, &ierr, c.name)
			assert.Equal(t, c.field, ierr.Field, c.name)
			assert.Empty(t, stmts, "%s: no statement reaches the database", c.name)
		}
		assert.Equal(t, before, e.snapshot(), "no row changed")
	})

	t.Run("NotFound", func(t *testing.T) {
		e := setup(t, open)
		f := e.fixture()
		before := e.snapshot()
		for _, c := range notFoundCases() {
			err := c.call(e.ctx, e.repo, f)
			assert.ErrorIs(t, err, repository.ErrNotFound, c.name)
			assert.NotErrorIs(t, err, repository.ErrInvalidInput, c.name)
		}
		assert.Equal(t, before, e.snapshot(), "no row changed")
	})

	t.Run("CancelledContext", func(t *testing.T) {
		e := setup(t, open)
		f := e.fixture()
		before := e.snapshot()
		ctx, cancel := context.WithCancel(e.ctx)
		cancel()
		for _, w := range writes() {
			err := w.call(ctx, e.repo, f)
			assert.ErrorIs(t, err, context.Canceled, w.name)
		}
		assert.Equal(t, before, e.snapshot())
	})

	t.Run("StoredVerbatim", func(t *testing.T) {
		e := setup(t, open)
		run, err := e.repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{Phase: injection, Metadata: map[string]any{injection: injection}})
		require.NoError(t, err)
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, []any{injection, "\ufffd", "emoji 🚀", "<b>&amp;</b>"}))
		require.NoError(t, e.repo.CreateSandboxRecord(e.ctx, repository.NewSandbox{ID: longest, FeatureRunID: run, Provider: injection}))
		require.NoError(t, e.repo.UpdateSandboxStatus(e.ctx, longest, models.SandboxRunning))

		var got models.FeatureRun
		e.get(&got, run)
		assert.Equal(t, injection, got.Phase)
		var meta map[string]string
		require.NoError(t, json.Unmarshal(got.Metadata, &meta))
		assert.Equal(t, map[string]string{injection: injection}, meta)
		var mem []string
		require.NoError(t, json.Unmarshal(got.Memories, &mem))
		assert.Equal(t, []string{injection, "\ufffd", "emoji 🚀", "<b>&amp;</b>"}, mem)
		var sandbox models.Sandbox
		e.get(&sandbox, longest)
		assert.Equal(t, injection, sandbox.Provider)
		assert.Equal(t, models.SandboxRunning, sandbox.Status)
		assert.EqualValues(t, 1, e.count("feature_runs"), "the injection did not run")
	})

	t.Run("AtLeastSixtyCases", func(t *testing.T) {
		t.Parallel()
		cases := badCases()
		assert.GreaterOrEqual(t, len(cases), 60)
		seen := map[string]bool{}
		for _, c := range cases {
			assert.False(t, seen[c.name], "duplicate case name %q", c.name)
			seen[c.name] = true
		}
	})
}
