package repository

import (
	"context"

	"github.com/google/uuid"
)

// The JSON columns [Repository.RunOutline] leaves out: those that grow with the work
// done, one value per phase or invocation.
var (
	phasePayloads      = []string{"output"}
	invocationPayloads = []string{"input", "steps", "tool_calls", "output"}
)

// RunOutline returns the run runID as [Repository.RunTimeline] does, in
// the same five queries, but without the JSON payloads of its phases and
// agent invocations: PhaseResult.Output and AgentInvocation's Input,
// Steps, ToolCalls and Output are nil. Everything else is there: the
// run's row whole, the statuses, times, models, token counts and costs,
// errors, the nesting of sub-agents, and the sandboxes and CTA events
// whole, which are few. It is what a waterfall of a large run needs,
// without reading megabytes of prompts and answers; read one invocation's
// payloads with [Repository.GetAgentInvocation].
//
// It may go to a read replica, as [Repository.RunTimeline] does.
func (r *Repository) RunOutline(ctx context.Context, runID uuid.UUID) (*Timeline, error) {
	return r.timeline(ctx, "run outline %s: %w", runID, false)
}
