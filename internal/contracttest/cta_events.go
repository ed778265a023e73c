package contracttest

import (
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// CTAEvents tests CreateCTAEvent, CompleteCTAEvent and TimeoutCTAEvent.
func CTAEvents(t *testing.T, open dbtest.Opener) {
	t.Run("Create", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		deadline := time.Date(2030, 1, 2, 3, 4, 5, 6789, time.FixedZone("X", 3600))
		require.NoError(t, e.repo.CreateCTAEvent(e.ctx, repository.NewCTAEvent{
			ID: "cta-1", FeatureRunID: run, Kind: "approval", RequestData: map[string]any{"question": "ship it?"}, ExpiresAt: deadline,
		}))
		var got models.CTAEvent
		e.get(&got, "cta-1")
		assert.Equal(t, models.CTAPending, got.Status)
		assert.Equal(t, "approval", got.Kind)
		jsonEq(t, `{"question":"ship it?"}`, got.RequestData)
		require.NotNil(t, got.ExpiresAt)
		assert.True(t, deadline.Truncate(time.Microsecond).Add(time.Microsecond).Equal(*got.ExpiresAt), "rounded up to the microsecond: got %s", got.ExpiresAt)
		assert.Nil(t, got.ResponseData)

		before := e.snapshot()
		require.NoError(t, e.repo.CreateCTAEvent(e.ctx, repository.NewCTAEvent{ID: "cta-1", FeatureRunID: run, Kind: "other"}))
		assert.Equal(t, before, e.snapshot(), "a replayed create keeps the first write")
	})

	t.Run("CreateConcurrentReplays", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		for _, err := range dbtest.Concurrently(16, func(int) error {
			return e.repo.CreateCTAEvent(e.ctx, repository.NewCTAEvent{ID: "cta-16", FeatureRunID: run})
		}) {
			require.NoError(t, err)
		}
		assert.EqualValues(t, 1, e.count("cta_events"))
	})

	t.Run("CreateForMissingRun", func(t *testing.T) {
		e := setup(t, open)
		require.ErrorIs(t, e.repo.CreateCTAEvent(e.ctx, repository.NewCTAEvent{ID: "cta-1", FeatureRunID: uuid.New()}), repository.ErrNotFound)
		assert.Zero(t, e.count("cta_events"))
	})

	t.Run("CompleteKeepsFirstResponse", func(t *testing.T) {
		e := setup(t, open)
		id := e.newCTA(e.newRun())
		require.NoError(t, e.repo.CompleteCTAEvent(e.ctx, id, map[string]any{"approved": true}))
		before := e.snapshot()
		require.NoError(t, e.repo.CompleteCTAEvent(e.ctx, id, map[string]any{"approved": false}))
		err := e.repo.TimeoutCTAEvent(e.ctx, id)
		require.ErrorIs(t, err, repository.ErrInvalidTransition)
		var terr *repository.TransitionError
		require.ErrorAs(t, err, &terr)
		assert.Equal(t, string(models.CTACompleted), terr.From)
		assert.Equal(t, before, e.snapshot())
		var got models.CTAEvent
		e.get(&got, id)
		assert.Equal(t, models.CTACompleted, got.Status)
		jsonEq(t, `{"approved":true}`, got.ResponseData)
		assert.NotNil(t, got.ResolvedAt)
	})

	t.Run("LateResponseIsRefused", func(t *testing.T) {
		e := setup(t, open)
		id := e.newCTA(e.newRun())
		require.NoError(t, e.repo.TimeoutCTAEvent(e.ctx, id))
		before := e.snapshot()
		require.NoError(t, e.repo.TimeoutCTAEvent(e.ctx, id))
		require.ErrorIs(t, e.repo.CompleteCTAEvent(e.ctx, id, "yes"), repository.ErrInvalidTransition)
		assert.Equal(t, before, e.snapshot())
	})

	t.Run("CompleteRacesTimeout", func(t *testing.T) {
		e := setup(t, open)
		run := e.newRun()
		wins := map[models.CTAStatus]int{}
		for round := range 20 {
			id := e.newCTA(run)
			response := map[string]any{"round": round}
			errs := dbtest.Concurrently(2, func(i int) error {
				if i == 0 {
					return e.repo.CompleteCTAEvent(e.ctx, id, response)
				}
				return e.repo.TimeoutCTAEvent(e.ctx, id)
			})
			var got models.CTAEvent
			e.get(&got, id)
			wins[got.Status]++
			switch got.Status {
			case models.CTACompleted:
				require.NoError(t, errs[0])
				require.ErrorIs(t, errs[1], repository.ErrInvalidTransition)
				jsonEq(t, `{"round":`+strconv.Itoa(round)+`}`, got.ResponseData)
			case models.CTATimedOut:
				require.ErrorIs(t, errs[0], repository.ErrInvalidTransition)
				require.NoError(t, errs[1])
				assert.Nil(t, got.ResponseData)
			default:
				t.Fatalf("round %d: status %s", round, got.Status)
			}
		}
		t.Logf("winners over 20 rounds: %v", wins)
	})

	t.Run("Missing", func(t *testing.T) {
		e := setup(t, open)
		require.ErrorIs(t, e.repo.CompleteCTAEvent(e.ctx, "nope", nil), repository.ErrNotFound)
		require.ErrorIs(t, e.repo.TimeoutCTAEvent(e.ctx, "nope"), repository.ErrNotFound)
	})
}
