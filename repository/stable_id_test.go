package repository_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"

	"github.com/agentpipeline/persistence/repository"
)

func TestStableID(t *testing.T) {
	t.Parallel()
	id := repository.StableID("evt", "step")
	assert.Equal(t, id, repository.StableID("evt", "step"), "deterministic")
	assert.Equal(t, uuid.Version(5), id.Version())
	assert.Equal(t, uuid.RFC4122, id.Variant())

	distinct := [][]string{
		{}, {""}, {"", ""}, {"a"}, {"a", ""}, {"", "a"}, {"a", "bc"}, {"ab", "c"}, {"abc"},
		{"a\x00", "b"}, {"a", "\x00b"}, {"evt", "step"}, {"step", "evt"},
	}
	seen := map[uuid.UUID][]string{}
	for _, parts := range distinct {
		got := repository.StableID(parts...)
		if prev, dup := seen[got]; dup {
			t.Errorf("StableID(%q) == StableID(%q)", parts, prev)
		}
		seen[got] = parts
	}
	// Pinned: changing the namespace or the encoding would change every ID a
	// workflow ever derived, breaking the replay of workflows in flight.
	assert.Equal(t, "a9469407-04b2-57d2-9c1f-4c7505ca4065", repository.StableID("evt_01HZX3", "feature-run").String())
}
