package dialect

import (
	"database/sql"
	"strconv"
	"strings"
)

// PurgeRuns is how many runs a purge works on at once: its statements
// take that many run IDs, the last repeated when there are fewer, so that
// each has one text whatever the batch (one prepared statement, one
// entry in a driver's statement cache).
const PurgeRuns = 100

// Purge is how a database runs Repository.PurgeFeatureRuns: it claims a
// batch of runs that may be purged, deletes their children in statements
// that each delete at most a cap of rows, and deletes the runs last.
//
// A run may be purged at a time vars[0] when it completed or failed
// before it (completed_at < vars[0]), and no sandbox of it is live and no
// CTA event of it is pending. created_at < vars[0] follows, as a run
// completes after it is created; it is stated so that the index on
// (status, created_at, id) bounds the scan.
type Purge struct {
	// Claim returns the IDs of at most vars[1] runs that may be purged at
	// vars[0]; where Lock is set it locks them, passing over the runs
	// other transactions hold.
	Claim *Statement
	// Lock locks the runs of the PurgeRuns IDs it takes that no other
	// transaction holds, and returns their IDs; nil on a database that
	// runs one writer at a time, where a purge holds no lock between its
	// statements and runs none in a transaction of its own.
	Lock *Statement
	// Children delete at most vars[0] rows of the runs whose IDs are the
	// PurgeRuns vars after it: agent invocations that no invocation names
	// as its parent, then phase results, then stopped or failed
	// sandboxes, then CTA events that are not pending. An invocation is
	// deleted only once its sub-agent invocations are, so that no delete
	// cascades to more rows than its cap.
	Children []*Statement
	// Runs deletes those of the runs whose IDs are the PurgeRuns vars after
	// vars[0] that may still be purged at vars[0].
	Runs *Statement
	// OneDelete runs each delete in a transaction of its own, where its
	// locks reach past the rows of the runs it deletes.
	OneDelete bool
	// TxOptions are the options of the transactions in which a purge
	// locks its runs and deletes their rows.
	TxOptions *sql.TxOptions
}

// PurgeChildTables are the tables of Purge.Children, in their order.
var PurgeChildTables = []string{"agent_invocations", "phase_results", "sandboxes", "cta_events"}

// Purgeable is true of a run, the row named run, that may be purged at the
// time var before (see Purge).
func Purgeable(run, before string) string {
	return run + ".status IN ('completed', 'failed') AND " + run + ".created_at < " + before + " AND " + run + ".completed_at < " + before +
		" AND NOT EXISTS (SELECT 1 FROM sandboxes AS s WHERE s.feature_run_id = " + run + ".id AND s.status NOT IN ('stopped', 'failed'))" +
		" AND NOT EXISTS (SELECT 1 FROM cta_events AS c WHERE c.feature_run_id = " + run + ".id AND c.status = 'pending')"
}

// PurgeIDs is the list of PurgeRuns numbered vars from $first on.
func PurgeIDs(first int) string {
	vars := make([]string, PurgeRuns)
	for i := range vars {
		vars[i] = "$" + strconv.Itoa(first+i)
	}
	return strings.Join(vars, ", ")
}
