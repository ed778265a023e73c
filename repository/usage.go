package repository

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"

	"github.com/google/uuid"
)

// Usage is what a run's agent invocations consumed, sub-agents' included:
// in total, per agent, per model and per provider.
type Usage struct {
	UsageTotals
	ByAgent []UsageGroup
	// ByModel groups by the model asked for (AgentInvocation.Model).
	ByModel []UsageGroup
	// ByProvider groups by provider; invocations without one are under "".
	ByProvider []UsageGroup
}

// UsageTotals sums the usage of a set of invocations. As in each
// invocation, the cache counts are parts of InputTokens and the reasoning
// count is part of OutputTokens.
type UsageTotals struct {
	Invocations           int64
	InputTokens           int64
	OutputTokens          int64
	CacheReadInputTokens  int64
	CacheWriteInputTokens int64
	ReasoningOutputTokens int64
	// CostNanoUSD is the cost in billionths of a US dollar. Costs are
	// integers from the start, so the database sums them exactly on every
	// dialect: no float drift, and no dependence on SQLite's decimal-free
	// numeric types.
	CostNanoUSD int64
}

// TotalTokens returns the input and output tokens together, which include
// the cache and reasoning tokens.
func (u UsageTotals) TotalTokens() int64 { return u.InputTokens + u.OutputTokens }

// UncachedInputTokens returns the input tokens neither read from nor
// written to the cache: those billed at the plain input price.
func (u UsageTotals) UncachedInputTokens() int64 {
	return u.InputTokens - u.CacheReadInputTokens - u.CacheWriteInputTokens
}

// CostUSD formats the cost as an exact decimal number of US dollars, such
// as "0.012345678".
func (u UsageTotals) CostUSD() string { return FormatNanoUSD(u.CostNanoUSD) }

// UsageGroup is the usage of the invocations sharing one agent, model or
// provider.
type UsageGroup struct {
	// Key is the agent, the model or the provider.
	Key string
	UsageTotals
}

// FormatNanoUSD formats a cost in billionths of a US dollar as an exact
// decimal number of dollars with nine decimal places.
func FormatNanoUSD(nano int64) string {
	sign := ""
	u := uint64(nano)
	if nano < 0 {
		sign, u = "-", uint64(-nano)
	}
	frac := strconv.FormatUint(u%1e9, 10)
	for len(frac) < 9 {
		frac = "0" + frac
	}
	return sign + strconv.FormatUint(u/1e9, 10) + "." + frac
}

// usageSums are the sums of usageSQL, each COALESCEd: the table is empty
// for a run without invocations, and the columns added after the table
// are NULL in rows written before they existed.
const usageSums = `count(*) AS invocations,
	COALESCE(sum(input_tokens), 0) AS input_tokens, COALESCE(sum(output_tokens), 0) AS output_tokens,
	COALESCE(sum(cache_read_input_tokens), 0) AS cache_read_input_tokens,
	COALESCE(sum(cache_write_input_tokens), 0) AS cache_write_input_tokens,
	COALESCE(sum(reasoning_output_tokens), 0) AS reasoning_output_tokens,
	COALESCE(sum(cost_nano_usd), 0) AS cost_nano_usd`

// usageSQL sums a run's usage in one statement: the total, then per agent,
// per model and per provider. It runs on every dialect (SQLite has no
// GROUPING SETS).
const usageSQL = `
SELECT 0 AS dim, '' AS group_key, ` + usageSums + `
FROM agent_invocations WHERE feature_run_id = @run
UNION ALL
SELECT 1, agent, ` + usageSums + `
FROM agent_invocations WHERE feature_run_id = @run GROUP BY agent
UNION ALL
SELECT 2, model, ` + usageSums + `
FROM agent_invocations WHERE feature_run_id = @run GROUP BY model
UNION ALL
SELECT 3, COALESCE(provider, ''), ` + usageSums + `
FROM agent_invocations WHERE feature_run_id = @run GROUP BY COALESCE(provider, '')
ORDER BY 1, 2`

// RunUsage returns the token counts and cost of the run runID, summed by
// the database, or [ErrNotFound]. Groups are ordered by key.
func (r *Repository) RunUsage(ctx context.Context, runID uuid.UUID) (Usage, error) {
	const op = "run usage %s: %w"
	if err := checkID("runID", runID); err != nil {
		return Usage{}, fmt.Errorf(op, runID, err)
	}
	if err := r.start(ctx); err != nil {
		return Usage{}, fmt.Errorf(op, runID, err)
	}
	var rows []struct {
		Dim int
		Key string `gorm:"column:group_key"`
		UsageTotals
	}
	if err := r.scan(ctx, &rows, usageSQL, sql.Named("run", runID)); err != nil {
		return Usage{}, fmt.Errorf(op, runID, err)
	}
	var u Usage
	for _, row := range rows {
		switch row.Dim {
		case 0:
			u.UsageTotals = row.UsageTotals
		case 1:
			u.ByAgent = append(u.ByAgent, UsageGroup{Key: row.Key, UsageTotals: row.UsageTotals})
		case 2:
			u.ByModel = append(u.ByModel, UsageGroup{Key: row.Key, UsageTotals: row.UsageTotals})
		case 3:
			u.ByProvider = append(u.ByProvider, UsageGroup{Key: row.Key, UsageTotals: row.UsageTotals})
		}
	}
	if u.Invocations == 0 {
		if _, err := r.GetFeatureRun(ctx, runID); err != nil {
			return Usage{}, fmt.Errorf(op, runID, err)
		}
	}
	return u, nil
}
