package repository

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/models"
)

// Timeline is everything recorded about one feature run, each list in the
// order it happened (creation time, then ID).
type Timeline struct {
	Run models.FeatureRun
	// Phases are the run's phase results, each with its agent invocations.
	Phases []PhaseTimeline
	// Unphased are the top-level invocations that belong to no phase.
	Unphased  []InvocationTimeline
	Sandboxes []models.Sandbox
	CTAEvents []models.CTAEvent
}

// PhaseTimeline is a phase result with the top-level agent invocations that
// ran in it.
type PhaseTimeline struct {
	models.PhaseResult
	Invocations []InvocationTimeline
}

// InvocationTimeline is an agent invocation with the sub-agent invocations
// it made, which are nested under it, however deep, rather than listed by
// their phase.
type InvocationTimeline struct {
	models.AgentInvocation
	// SubInvocations are the invocations whose ParentInvocationID is this
	// invocation's, each with its own.
	SubInvocations []InvocationTimeline
}

// RunTimeline returns the run runID with all its children, or [ErrNotFound].
// It costs five queries whatever the run's size and however deep its
// sub-agents nest, one per table, read in one transaction so that they
// agree with each other; the nesting is done in memory, without
// recursion, so that no depth exhausts the stack.
//
// An invocation is top-level, listed under its phase (or in Unphased),
// when it has no parent. One whose parent is not in the run's invocations
// is listed as top-level too, rather than lost, though the database
// prevents that unless its rows are edited by hand.
func (r *Repository) RunTimeline(ctx context.Context, runID uuid.UUID) (*Timeline, error) {
	return r.timeline(ctx, "run timeline %s: %w", runID, true)
}

// timeline reads the timeline of the run runID, with the JSON payloads
// of its phases and invocations or without them.
func (r *Repository) timeline(ctx context.Context, op string, runID uuid.UUID, payloads bool) (*Timeline, error) {
	if err := checkID("runID", runID); err != nil {
		return nil, fmt.Errorf(op, runID, err)
	}
	if err := r.start(ctx); err != nil {
		return nil, fmt.Errorf(op, runID, err)
	}
	var (
		tl          Timeline
		phases      []models.PhaseResult
		invocations []models.AgentInvocation
		runs        []models.FeatureRun
	)
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := r.from(tx, models.FeatureRun{}).Where("id = ?", runID).Limit(1).Find(&runs).Error; err != nil || len(runs) == 0 {
			return err
		}
		for _, x := range []struct {
			dest  any
			model tabler
		}{{&phases, models.PhaseResult{}}, {&invocations, models.AgentInvocation{}}, {&tl.Sandboxes, models.Sandbox{}}, {&tl.CTAEvents, models.CTAEvent{}}} {
			dest := x.dest
			q := r.from(tx, x.model).Where("feature_run_id = ?", runID).Order("created_at, id")
			if !payloads {
				switch dest.(type) {
				case *[]models.PhaseResult:
					q = q.Omit(phasePayloads...)
				case *[]models.AgentInvocation:
					q = q.Omit(invocationPayloads...)
				}
			}
			if err := q.Find(dest).Error; err != nil {
				return err
			}
		}
		return nil
	}, r.dialect.Snapshot)
	if err != nil {
		return nil, fmt.Errorf(op, runID, r.translate(ctx, err))
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf(op, runID, ErrNotFound)
	}
	for _, rows := range []any{&runs, &phases, &invocations, &tl.Sandboxes, &tl.CTAEvents} {
		inUTC(rows)
	}
	tl.Run = runs[0]
	tl.Phases = make([]PhaseTimeline, len(phases))
	byPhase := make(map[uuid.UUID]*PhaseTimeline, len(phases))
	for i, p := range phases {
		tl.Phases[i].PhaseResult = p
		byPhase[p.ID] = &tl.Phases[i]
	}
	for _, inv := range nest(invocations) {
		if inv.PhaseResultID != nil {
			if p, ok := byPhase[*inv.PhaseResultID]; ok {
				p.Invocations = append(p.Invocations, inv)
				continue
			}
		}
		tl.Unphased = append(tl.Unphased, inv)
	}
	return &tl, nil
}

// nest returns the top-level invocations of invocations, each with its
// sub-agent invocations nested under it, every list in the order of
// invocations. An invocation whose parent is not in invocations is
// top-level. A cycle of parents, which only a hand-edited database holds
// (the database checks a parent exists when a row is written, so a cycle
// takes an update), is broken at its first invocation, which is listed
// after the top-level ones: no invocation is left out.
//
// It walks the tree with a stack of its own rather than recursing, so
// that no depth of sub-agents can exhaust the goroutine's stack: each
// node is placed in its parent's list, allocated at its final length,
// before its own sub-agents are.
func nest(invocations []models.AgentInvocation) []InvocationTimeline {
	index := make(map[uuid.UUID]int, len(invocations))
	for i, inv := range invocations {
		index[inv.ID] = i
	}
	children := make([][]int, len(invocations))
	var roots []int
	for i, inv := range invocations {
		if inv.ParentInvocationID != nil {
			if p, ok := index[*inv.ParentInvocationID]; ok && p != i {
				children[p] = append(children[p], i)
				continue
			}
		}
		roots = append(roots, i)
	}
	placed := make([]bool, len(invocations))
	type pending struct {
		node *InvocationTimeline
		i    int
	}
	var stack []pending
	// build fills node with invocation i and everything under it. Every
	// invocation has one parent, so a sub-agent can only have been placed
	// already as the start of a cycle, which is where the cycle is
	// broken.
	build := func(node *InvocationTimeline, i int) {
		placed[i] = true
		stack = append(stack[:0], pending{node, i})
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			top.node.AgentInvocation = invocations[top.i]
			n := 0
			for _, c := range children[top.i] {
				if !placed[c] {
					n++
				}
			}
			if n == 0 {
				continue
			}
			top.node.SubInvocations = make([]InvocationTimeline, 0, n)
			for _, c := range children[top.i] {
				if !placed[c] {
					placed[c] = true
					top.node.SubInvocations = append(top.node.SubInvocations, InvocationTimeline{})
					stack = append(stack, pending{&top.node.SubInvocations[len(top.node.SubInvocations)-1], c})
				}
			}
		}
	}
	top := make([]InvocationTimeline, 0, len(roots))
	for _, i := range roots {
		var node InvocationTimeline
		build(&node, i)
		top = append(top, node)
	}
	// What no root reaches is a cycle: list each as top-level where it
	// is first met, in order.
	for i := range invocations {
		if !placed[i] {
			var node InvocationTimeline
			build(&node, i)
			top = append(top, node)
		}
	}
	return top
}
