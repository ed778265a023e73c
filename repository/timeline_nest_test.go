package repository

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
)

// nestRecursively is nest as it was written before it walked the tree
// with a stack of its own: the reference its answers must equal, at the
// depths a recursion can reach.
func nestRecursively(invocations []models.AgentInvocation) []InvocationTimeline {
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
	var build func(i int) InvocationTimeline
	build = func(i int) InvocationTimeline {
		placed[i] = true
		node := InvocationTimeline{AgentInvocation: invocations[i]}
		for _, c := range children[i] {
			if !placed[c] {
				node.SubInvocations = append(node.SubInvocations, build(c))
			}
		}
		return node
	}
	var top []InvocationTimeline
	for _, i := range roots {
		top = append(top, build(i))
	}
	for i := range invocations {
		if !placed[i] {
			top = append(top, build(i))
		}
	}
	return top
}

// TestNestAsTheRecursionDid compares nest with nestRecursively on random
// sets of invocations: trees, parents missing from the set, invocations
// their own parent, and cycles of parents that only a hand-edited database
// holds, each set in a random order. Every invocation must be listed once.
func TestNestAsTheRecursionDid(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 2000 {
		n := rng.IntN(40)
		ids := make([]uuid.UUID, n)
		for i := range ids {
			ids[i] = uuid.New()
		}
		invocations := make([]models.AgentInvocation, n)
		for i := range invocations {
			invocations[i].ID = ids[i]
			invocations[i].Agent = ids[i].String()
			switch r := rng.IntN(10); {
			case r < 3: // top-level
			case r < 4: // a parent not in the run's invocations
				p := uuid.New()
				invocations[i].ParentInvocationID = &p
			default: // any invocation, itself included: cycles happen
				p := ids[rng.IntN(n)]
				invocations[i].ParentInvocationID = &p
			}
		}
		rng.Shuffle(n, func(i, j int) { invocations[i], invocations[j] = invocations[j], invocations[i] })

		got, want := nest(invocations), nestRecursively(invocations)
		if len(got) == 0 && len(want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: nest of %d invocations differs from the recursion's:\ngot  %v\nwant %v", round, n, shapeOf(got), shapeOf(want))
		}
		listed := 0
		for stack := slices.Clone(got); len(stack) > 0; {
			node := stack[len(stack)-1]
			stack = append(stack[:len(stack)-1], node.SubInvocations...)
			listed++
		}
		if listed != n {
			t.Fatalf("round %d: %d invocations listed, want %d", round, listed, n)
		}
	}
}

// shapeOf describes a forest by agent, for a failure's message.
func shapeOf(nodes []InvocationTimeline) []any {
	out := make([]any, len(nodes))
	for i, node := range nodes {
		out[i] = []any{node.Agent[:8], shapeOf(node.SubInvocations)}
	}
	return out
}
