package repository

import (
	"context"
	"fmt"

	"github.com/google/uuid"
)

// RunSummary is what a listing shows of a run beyond its row: what its
// agent invocations consumed, sub-agents' included, and how many of its
// CTA events wait for a person.
type RunSummary struct {
	Usage UsageTotals
	// PendingCTAEvents counts the run's CTA events still pending.
	PendingCTAEvents int64
}

// runSummariesSQL sums the usage of each run of a list and counts its
// pending CTA events, in one statement: along the indexes on
// (feature_run_id, created_at) of both tables.
const runSummariesSQL = `
SELECT feature_run_id, 0 AS part, ` + usageSums + `
FROM agent_invocations WHERE feature_run_id IN @runs GROUP BY feature_run_id
UNION ALL
SELECT feature_run_id, 1, count(*), 0, 0, 0, 0, 0, 0
FROM cta_events WHERE feature_run_id IN @runs AND status = 'pending' GROUP BY feature_run_id`

// SummarizeRuns returns the usage totals and the number of pending CTA
// events of each run of runIDs, such as a page of
// [Repository.ListFeatureRuns], in one query whatever their number (at
// most [MaxPageLimit]). A run without invocations or pending events, or
// that does not exist, is missing from the map: its summary is the zero
// [RunSummary]. It may go to a read replica.
func (r *Repository) SummarizeRuns(ctx context.Context, runIDs []uuid.UUID) (map[uuid.UUID]RunSummary, error) {
	const op = "summarize runs: %w"
	if len(runIDs) > MaxPageLimit {
		return nil, fmt.Errorf(op, &InputError{Field: "runIDs", Reason: fmt.Sprintf("at most %d runs", MaxPageLimit)})
	}
	for _, id := range runIDs {
		if err := checkID("runIDs", id); err != nil {
			return nil, fmt.Errorf(op, err)
		}
	}
	if err := r.start(ctx); err != nil {
		return nil, fmt.Errorf(op, err)
	}
	out := make(map[uuid.UUID]RunSummary, len(runIDs))
	if len(runIDs) == 0 {
		return out, nil
	}
	var rows []struct {
		FeatureRunID uuid.UUID
		Part         int
		UsageTotals
	}
	if err := r.scan(ctx, &rows, runSummariesSQL, map[string]any{"runs": runIDs}); err != nil {
		return nil, fmt.Errorf(op, err)
	}
	for _, row := range rows {
		s := out[row.FeatureRunID]
		if row.Part == 0 {
			s.Usage = row.UsageTotals
		} else {
			s.PendingCTAEvents = row.Invocations
		}
		out[row.FeatureRunID] = s
	}
	return out, nil
}
