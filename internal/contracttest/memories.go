package contracttest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// Memories tests UpdateFeatureRunMemories.
func Memories(t *testing.T, open dbtest.Opener) {
	memories := func(e *env, run uuid.UUID) []any {
		e.t.Helper()
		var got models.FeatureRun
		e.get(&got, run)
		var values []any
		require.NoError(e.t, json.Unmarshal(got.Memories, &values))
		return values
	}

	t.Run("AppendsInOrderOfFirstAppearance", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, []any{"a", "b", "a"}))
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, []any{"c", "b", map[string]any{"k": 1}}))
		assert.Equal(t, []any{"a", "b", "c", map[string]any{"k": 1.0}}, memories(e, run))
	})

	t.Run("JSONEqualValuesAreNotAppendedTwice", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, []any{
			json.RawMessage(`{"b": [1, 2.0], "a": {"y": true, "x": null}}`),
			1.5,
			"text",
		}))
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, []any{
			json.RawMessage(`{"a":{"x":null,"y":true},"b":[1.0,2]}`),
			json.RawMessage(`15e-1`),
			json.RawMessage(`"te\u0078t"`),
		}))
		assert.Len(t, memories(e, run), 3, "key order, whitespace, escapes and number forms do not matter")
	})

	t.Run("ContainedIsNotEqual", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, []any{
			[]any{1, 2}, map[string]any{"a": 1, "b": 2}, "ab", 10,
		}))
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, []any{
			[]any{1}, map[string]any{"a": 1}, "a", 1, []any{2, 1}, "1", nil, false, 0,
		}))
		assert.Len(t, memories(e, run), 13, "a value contained in another, or of another type, is still new")
	})

	t.Run("ReplayChangesNothing", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		batch := []any{"a", map[string]any{"n": 1}}
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, batch))
		before := e.snapshot()
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, batch))
		assert.Equal(t, before, e.snapshot(), "not even updated_at moves on a replay")
	})

	t.Run("EmptyIsANoOp", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		rec := dbtest.RecorderOf(e.db)
		rec.Start()
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, nil))
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, []any{}))
		stmts, _ := rec.Stop()
		assert.Empty(t, stmts)
		assert.Empty(t, memories(e, run))
	})

	t.Run("Concurrent32DistinctAppends", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		errs := dbtest.Concurrently(32, func(i int) error {
			return e.repo.UpdateFeatureRunMemories(e.ctx, run, []any{fmt.Sprintf("memory-%02d", i)})
		})
		for _, err := range errs {
			require.NoError(t, err)
		}
		got := memories(e, run)
		assert.Len(t, got, 32)
		for i := range 32 {
			assert.Contains(t, got, fmt.Sprintf("memory-%02d", i))
		}
	})

	t.Run("ConcurrentOverlappingAppends", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		errs := dbtest.Concurrently(16, func(i int) error {
			return e.repo.UpdateFeatureRunMemories(e.ctx, run, []any{"shared", fmt.Sprint(i % 4), map[string]any{"same": true}})
		})
		for _, err := range errs {
			require.NoError(t, err)
		}
		assert.Len(t, memories(e, run), 6)
	})

	t.Run("LargeArrayStillDeduplicates", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		batch := make([]any, 0, 1000)
		for i := range 1000 {
			batch = append(batch, map[string]any{"i": i, "s": strings.Repeat("x", i%7)})
		}
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, batch))
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, append(batch[500:], "new")))
		got := memories(e, run)
		require.Len(t, got, 1001)
		assert.Equal(t, "new", got[1000])
	})

	t.Run("FinishedRunRefusesNewMemories", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, []any{"a"}))
		require.NoError(t, e.repo.CompleteFeatureRun(e.ctx, run))
		before := e.snapshot()
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, []any{"a"}), "a replay is still a no-op")
		require.ErrorIs(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, []any{"a", "b"}), repository.ErrInvalidTransition)
		assert.Equal(t, before, e.snapshot())
	})

	t.Run("MissingRun", func(t *testing.T) {
		e := setup(t, open)
		require.ErrorIs(t, e.repo.UpdateFeatureRunMemories(e.ctx, uuid.New(), []any{"a"}), repository.ErrNotFound)
	})

	t.Run("InitialMemoriesAreDeduplicated", func(t *testing.T) {
		e := setup(t, open)
		run, err := e.repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{Phase: "plan", Memories: []any{"a", "a", 2, 2.0}})
		require.NoError(t, err)
		assert.Equal(t, []any{"a", 2.0}, memories(e, run))
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, []any{"a", "b"}))
		assert.Equal(t, []any{"a", 2.0, "b"}, memories(e, run))
	})
}
