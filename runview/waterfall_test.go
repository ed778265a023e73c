package runview

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// TestOpenBarsEndWhereTheRunDid lays out a run whose invocation never
// finished: it ends where the run ended, not now; and on a silent run,
// where the run went silent.
func TestOpenBarsEndWhereTheRunDid(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s int) *time.Time { v := t0.Add(time.Duration(s) * time.Second); return &v }
	deadline := at(3600)
	tl := &repository.Timeline{
		Run: models.FeatureRun{ID: uuid.New(), Status: models.RunCompleted, CreatedAt: t0, UpdatedAt: *at(10), CompletedAt: at(10)},
		Unphased: []repository.InvocationTimeline{{
			AgentInvocation: models.AgentInvocation{ID: uuid.New(), Agent: "stuck", Status: models.InvocationRunning, CreatedAt: *at(2), UpdatedAt: *at(2)},
			SubInvocations: []repository.InvocationTimeline{{
				AgentInvocation: models.AgentInvocation{ID: uuid.New(), Agent: "sub", Status: models.InvocationCompleted, CreatedAt: *at(3), UpdatedAt: *at(4), FinishedAt: at(4), InputTokens: 5, CostNanoUSD: 7},
			}},
		}},
		CTAEvents: []models.CTAEvent{{ID: "ask", Status: models.CTAPending, CreatedAt: *at(5), UpdatedAt: *at(5), ExpiresAt: deadline}},
	}
	// The page lays out a finished run up to its completion.
	w := layout(tl, *tl.Run.CompletedAt)
	require.Len(t, w.Rows, 5) // run, (no phase), stuck, sub, ask
	stuck := w.Rows[2]
	require.Equal(t, "stuck", stuck.Label)
	assert.True(t, stuck.Open)
	assert.InDelta(t, 200, stuck.Bars[0].X, 1e-9)
	assert.InDelta(t, 800, stuck.Bars[0].W, 1e-9, "it ends where the run ended")
	assert.Equal(t, 8*time.Second, stuck.Duration)
	assert.Equal(t, int64(5), stuck.Subtree.InputTokens, "its subtree holds its sub-agent's usage")
	assert.Equal(t, int64(0), stuck.Own.InputTokens)
	sub := w.Rows[3]
	assert.Equal(t, 1, sub.Depth)
	assert.InDelta(t, 300, sub.Bars[0].X, 1e-9)
	assert.InDelta(t, 100, sub.Bars[0].W, 1e-9)
	ask := w.Rows[4]
	assert.True(t, ask.DeadlineOut, "a deadline past the run does not stretch the scale")
	assert.Equal(t, 10*time.Second, w.Span)

	// A running run that went silent at 10 s, drawn two hours later,
	// ends where it went silent.
	tl.Run.Status, tl.Run.CompletedAt = models.RunRunning, nil
	assert.Equal(t, *at(10), lastSeen(tl))
	w = layout(tl, lastSeen(tl))
	assert.InDelta(t, 800, w.Rows[2].Bars[0].W, 1e-9)
}

func TestUnescapeHTML(t *testing.T) {
	for in, want := range map[string]string{
		`"\u003cb\u003e \u0026 \u003E"`: `"<b> & >"`,
		`"\\u003c"`:                     `"\\u003c"`,
		`"\\\u003c"`:                    `"\\<"`,
		`"\u00e9\n"`:                    `"\u00e9\n"`,
		`"x\`:                           `"x\`,
	} {
		assert.Equal(t, want, string(unescapeHTML([]byte(in))), in)
	}
}
