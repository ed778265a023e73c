package runview

import (
	"time"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// scaleWidth is the width of a waterfall row in the units of its SVG
// viewBox.
const scaleWidth = 1000

// row is one line of a waterfall.
type row struct {
	// Kind is run, phase, invocation, cta or sandbox.
	Kind  string
	Label string
	// Detail follows the label: the model of an invocation, the kind of a
	// CTA event, the provider of a sandbox.
	Detail string
	Status string
	// Depth is the nesting of a sub-agent under top-level invocations
	// (1), and Indent its class, capped so that a deep tree stays on the
	// page.
	Depth  int
	Indent int
	// Link is the page of an invocation, relative to the run's page.
	Link     string
	Start    time.Time
	Duration time.Duration
	// Open is set for a bar that never finished: it ends where the run
	// ended, went silent, or now for a live run.
	Open bool
	Bars []bar
	// Deadline is a CTA event's, if any, and DeadlineX its place on the
	// scale; DeadlineOut is set when it lies past the scale's end.
	Deadline    *time.Time
	DeadlineX   float64
	DeadlineOut bool
	// Own and Subtree are the usage of an invocation, and of it with
	// every sub-agent under it.
	Own, Subtree repository.UsageTotals
	// Error is why it failed, cut.
	Error payload
}

// bar is a segment of a row, on the scale's units.
type bar struct {
	X, W  float64
	Class string
	Title string
}

// waterfall is a run's timeline laid out to scale.
type waterfall struct {
	Start, End time.Time
	Span       time.Duration
	Rows       []row
	// Ticks are the times at fifths of the scale, from its start.
	Ticks []time.Duration
	// MaxDepth is the deepest sub-agent.
	MaxDepth int
}

// maxIndent caps the indentation of sub-agents; deeper ones say their
// depth.
const maxIndent = 12

// layout lays out tl to scale. end is where bars that never finished end:
// the run's completion, its last record for a silent run, or now.
func layout(tl *repository.Timeline, end time.Time) waterfall {
	w := waterfall{Start: tl.Run.CreatedAt, End: end}
	invocations := flatten(tl)
	// The scale runs from the earliest start to the latest end recorded,
	// so that nothing falls off it (a caller's StartedAt may precede the
	// run's creation). Deadlines do not widen it: one a day away would
	// squeeze the rest into a line.
	widen := func(ts ...*time.Time) {
		for _, t := range ts {
			if t == nil || t.IsZero() {
				continue
			}
			if t.Before(w.Start) {
				w.Start = *t
			}
			if t.After(w.End) {
				w.End = *t
			}
		}
	}
	widen(tl.Run.CompletedAt)
	for _, p := range tl.Phases {
		widen(&p.CreatedAt, p.FinishedAt)
	}
	for _, s := range tl.Sandboxes {
		widen(&s.CreatedAt, s.StartedAt, s.StoppedAt)
	}
	for _, c := range tl.CTAEvents {
		widen(&c.CreatedAt, c.ResolvedAt)
	}
	for _, f := range invocations {
		widen(f.inv.StartedAt, &f.inv.CreatedAt, f.inv.FinishedAt)
	}
	w.Span = w.End.Sub(w.Start)
	for i := range 6 {
		w.Ticks = append(w.Ticks, w.Span*time.Duration(i)/5)
	}
	x := func(t time.Time) float64 {
		if w.Span <= 0 {
			return 0
		}
		return float64(t.Sub(w.Start)) / float64(w.Span) * scaleWidth
	}
	// seg is the bar from from to to, or to end when to is nil.
	seg := func(from time.Time, to *time.Time, class, title string) (bar, bool) {
		open := to == nil
		stop := end
		if !open {
			stop = *to
		}
		if stop.Before(from) {
			stop = from
		}
		if open {
			class += " open"
		}
		b := bar{X: x(from), W: x(stop) - x(from), Class: class, Title: title}
		if b.W < 2 {
			b.W = 2 // a sliver stays visible
		}
		if b.X+b.W > scaleWidth {
			b.X = max(0, scaleWidth-b.W)
		}
		return b, open
	}
	span := func(from time.Time, to *time.Time) time.Duration {
		if to == nil {
			return end.Sub(from)
		}
		return to.Sub(from)
	}
	add := func(r row, from time.Time, to *time.Time, class, title string) {
		b, open := seg(from, to, class, title)
		r.Bars, r.Open = append(r.Bars, b), open
		w.Rows = append(w.Rows, r)
	}

	add(row{Kind: "run", Label: "run", Detail: tl.Run.Phase, Status: string(tl.Run.Status), Start: tl.Run.CreatedAt, Duration: span(tl.Run.CreatedAt, tl.Run.CompletedAt)},
		tl.Run.CreatedAt, tl.Run.CompletedAt, "s-"+string(tl.Run.Status), "run")
	emit := func(f flat) {
		inv := f.inv
		start := inv.CreatedAt
		if inv.StartedAt != nil {
			start = *inv.StartedAt
		}
		r := row{
			Kind: "invocation", Label: inv.Agent, Detail: inv.Model, Status: string(inv.Status),
			Depth: f.depth, Indent: min(f.depth, maxIndent), Link: tl.Run.ID.String() + "/invocations/" + inv.ID.String(),
			Start: start, Duration: span(start, inv.FinishedAt), Own: f.own, Subtree: f.subtree,
		}
		if inv.Error != nil {
			r.Error = newText(*inv.Error, 200)
		}
		w.MaxDepth = max(w.MaxDepth, f.depth)
		add(r, start, inv.FinishedAt, "s-"+string(inv.Status), inv.Agent)
	}
	// invocations lists each phase's in the order of the phases, then
	// those of no phase.
	next := 0
	for i := range tl.Phases {
		p := &tl.Phases[i]
		r := row{Kind: "phase", Label: p.Phase, Status: string(p.Status), Start: p.CreatedAt, Duration: span(p.CreatedAt, p.FinishedAt)}
		if p.Error != nil {
			r.Error = newText(*p.Error, 200)
		}
		add(r, p.CreatedAt, p.FinishedAt, "s-"+string(p.Status), p.Phase)
		for ; next < len(invocations) && invocations[next].phase == &p.ID; next++ {
			emit(invocations[next])
		}
	}
	if next < len(invocations) {
		w.Rows = append(w.Rows, row{Kind: "phase", Label: "(no phase)"})
		for ; next < len(invocations); next++ {
			emit(invocations[next])
		}
	}
	for _, c := range tl.CTAEvents {
		r := row{Kind: "cta", Label: c.ID, Detail: c.Kind, Status: string(c.Status), Start: c.CreatedAt, Duration: span(c.CreatedAt, c.ResolvedAt)}
		if c.ExpiresAt != nil {
			r.Deadline = c.ExpiresAt
			r.DeadlineX = x(*c.ExpiresAt)
			if r.DeadlineX > scaleWidth {
				r.DeadlineX, r.DeadlineOut = scaleWidth-1, true
			}
			r.DeadlineX = max(r.DeadlineX, 1)
		}
		add(r, c.CreatedAt, c.ResolvedAt, "s-"+string(c.Status), "waiting for a person")
	}
	for _, s := range tl.Sandboxes {
		r := row{Kind: "sandbox", Label: s.ID, Detail: s.Provider, Status: string(s.Status), Start: s.CreatedAt, Duration: span(s.CreatedAt, s.StoppedAt)}
		// Its lifecycle: creating until it first ran, then up until it
		// stopped; one that never ran was creating until it stopped.
		creatingEnd := s.StartedAt
		if creatingEnd == nil {
			creatingEnd = s.StoppedAt
		}
		b, open := seg(s.CreatedAt, creatingEnd, "s-creating", "creating")
		r.Bars, r.Open = []bar{b}, open
		if s.StartedAt != nil {
			b, open := seg(*s.StartedAt, s.StoppedAt, "s-up", "up ("+string(s.Status)+")")
			r.Bars, r.Open = append(r.Bars, b), open
		}
		w.Rows = append(w.Rows, r)
	}
	return w
}

// flat is an invocation in the order of a waterfall's rows.
type flat struct {
	inv   *models.AgentInvocation
	depth int
	// phase is the ID of the top-level invocation's phase, the same
	// pointer for all of a phase's, or nil.
	phase         *uuid.UUID
	own, subtree  repository.UsageTotals
	parentInFlats int
}

// flatten lists the invocations of tl in the order of a waterfall, each
// after its caller, with its depth and the usage of its subtree. It walks
// the tree with a stack of its own, and sums the subtrees by walking the
// list backwards, so that no depth of sub-agents exhausts the goroutine's
// stack.
func flatten(tl *repository.Timeline) []flat {
	var out []flat
	type item struct {
		node   *repository.InvocationTimeline
		depth  int
		parent int
	}
	var stack []item
	walk := func(phase *uuid.UUID, tops []repository.InvocationTimeline) {
		for i := len(tops) - 1; i >= 0; i-- {
			stack = append(stack, item{&tops[i], 0, -1})
		}
		for len(stack) > 0 {
			it := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			inv := &it.node.AgentInvocation
			own := repository.UsageTotals{
				Invocations: 1, InputTokens: inv.InputTokens, OutputTokens: inv.OutputTokens,
				CacheReadInputTokens: inv.CacheReadInputTokens, CacheWriteInputTokens: inv.CacheWriteInputTokens,
				ReasoningOutputTokens: inv.ReasoningOutputTokens, CostNanoUSD: inv.CostNanoUSD,
			}
			out = append(out, flat{inv: inv, depth: it.depth, phase: phase, own: own, subtree: own, parentInFlats: it.parent})
			self := len(out) - 1
			subs := it.node.SubInvocations
			for i := len(subs) - 1; i >= 0; i-- {
				stack = append(stack, item{&subs[i], it.depth + 1, self})
			}
		}
	}
	for i := range tl.Phases {
		walk(&tl.Phases[i].ID, tl.Phases[i].Invocations)
	}
	walk(nil, tl.Unphased)
	for i := len(out) - 1; i >= 0; i-- {
		if p := out[i].parentInFlats; p >= 0 {
			add(&out[p].subtree, out[i].subtree)
		}
	}
	return out
}

// add adds u to t.
func add(t *repository.UsageTotals, u repository.UsageTotals) {
	t.Invocations += u.Invocations
	t.InputTokens += u.InputTokens
	t.OutputTokens += u.OutputTokens
	t.CacheReadInputTokens += u.CacheReadInputTokens
	t.CacheWriteInputTokens += u.CacheWriteInputTokens
	t.ReasoningOutputTokens += u.ReasoningOutputTokens
	t.CostNanoUSD += u.CostNanoUSD
}
