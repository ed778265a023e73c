package repository

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/agentpipeline/persistence/internal/dialect"
)

// PurgeChildRows is the most rows of one child table (agent_invocations,
// phase_results, sandboxes or cta_events) that one statement of
// [Repository.PurgeFeatureRuns] deletes. It bounds how long a statement
// runs and how many row locks a purge transaction holds, whatever the
// size of a run: a run with millions of invocations is deleted in
// thousands of short statements, not one that holds its locks for
// minutes. Its rows may hold megabytes of JSON each, which a statement
// writes to the database's log as it deletes them, so the cap is kept
// small.
const PurgeChildRows = 1000

// PurgeFeatureRuns deletes at most limit feature runs that completed or
// failed before finishedBefore, with every row of theirs in the four other
// tables, and returns how many runs it deleted. limit below 1 is an
// [*InputError] on "limit", and a zero finishedBefore one on
// "finishedBefore"; nothing is written then. Call it until it returns 0 to
// drain a backlog: it takes runs by status, then by creation, and may
// return fewer than limit while others hold the remaining runs.
//
// It never deletes a running run, nor a run with a sandbox that is not
// stopped or failed, nor one with a pending CTA event: those are for
// [Repository.LeakedSandboxes] and [Repository.ExpireCTAEvents] to
// resolve, after which a later call deletes the run. Phase results and
// agent invocations go with their run whatever their status (a running
// invocation of a completed run included).
//
// A call works on batches of up to 100 runs. It claims a batch, deletes its
// rows table by table, agent invocations first (each only once no other
// invocation names it as its parent, so that no delete cascades past the
// cap), then phase results, sandboxes and CTA events, in statements of at
// most [PurgeChildRows] rows each, and deletes the runs last, checking
// again that each may still be purged. The returned count is the rows that
// last statement deleted: a run counts only once it is gone whole, so the
// counts of purgers running at once add up to the runs deleted. A run too
// large for one statement takes as many as it needs, within the call.
//
// On PostgreSQL and MariaDB the batch is claimed with SELECT … FOR UPDATE
// SKIP LOCKED, so that purgers running at once take different runs and
// never wait for each other. Its rows are deleted in short transactions
// that each lock the batch again (a run another purger then holds is left
// to it); the runs' locks keep children from being created for them
// meanwhile. Between those transactions nothing is held. On PostgreSQL a
// transaction runs deletes until one reaches the cap, and its locks are
// on rows of the runs it deletes only, so a write on another run never
// waits for it. On MariaDB a transaction runs one delete, at READ
// COMMITTED: InnoDB's foreign key checks lock the gaps beside the keys
// they look up, which an insert of another run's child may need, so
// those locks are held for one statement. On SQLite, which runs one
// write at a time, the statements run on their own, holding nothing
// between them; purgers running at once may work on the same runs, and
// each run is deleted, and counted, once.
//
// Inside [Repository.Transaction] every statement is part of the caller's
// transaction and keeps its locks until it ends (on MariaDB, at the
// caller's isolation level), and a run's rows go only if it commits. When
// an error ends the call after some runs were deleted, it returns their
// number with the error. On a DryRun session it renders the claim and
// returns 0.
//
// The index on (status, created_at, id) finds the runs: a run completes
// after it is created, so created_at < finishedBefore bounds the scan, and
// completed_at is checked on the rows found. The children are found by
// their indexes on (feature_run_id, created_at), and sub-agent
// invocations by parent_invocation_id.
//
// A purged run is gone: [Repository.CreateFeatureRun] with its ID, as a
// workflow replaying its first step would send, creates a new running run
// with no children and a NULL step, which fenced moves (see
// [Repository.AtStep]) then treat as step 0. Purge only runs that no
// workflow will replay: choose finishedBefore older than the longest time
// the workflow engine may retry, reset or replay a finished workflow (its
// retention period). A workflow that may run again after that should
// check, in its own history or with [Repository.GetFeatureRun], whether
// its run already finished, and treat a run it created before that is now
// [ErrNotFound] as purged, rather than create it again. docs/retention.md
// has more.
func (r *Repository) PurgeFeatureRuns(ctx context.Context, finishedBefore time.Time, limit int) (int, error) {
	const op = "purge feature runs: %w"
	if limit < 1 {
		return 0, fmt.Errorf(op, &InputError{Field: "limit", Reason: fmt.Sprintf("%d is below 1", limit)})
	}
	if finishedBefore.IsZero() {
		return 0, fmt.Errorf(op, &InputError{Field: "finishedBefore", Reason: "must not be zero"})
	}
	if err := checkTime("finishedBefore", finishedBefore); err != nil {
		return 0, fmt.Errorf(op, err)
	}
	if err := r.startWrite(ctx); err != nil {
		return 0, fmt.Errorf(op, err)
	}
	// Stored times have microseconds, so rounding up keeps "before".
	before := ceilMicro(finishedBefore).UTC()
	purged := 0
	for purged < limit {
		n, more, err := r.purgeBatch(ctx, before, min(limit-purged, dialect.PurgeRuns))
		purged += n
		if err != nil {
			return purged, fmt.Errorf(op, err)
		}
		// A batch that deleted nothing claimed only runs that others
		// took from it: going on could loop on them.
		if !more || n == 0 {
			break
		}
	}
	return purged, nil
}

// purgeBatch claims at most n runs that may be purged at before, deletes
// them whole, and returns how many it deleted and whether more runs may be
// waiting (the claim found n).
func (r *Repository) purgeBatch(ctx context.Context, before time.Time, n int) (deleted int, more bool, err error) {
	p := &r.dialect.Purge
	locking := p.Lock != nil && !r.dryRun()
	// The state of the batch, changed only by rounds that committed.
	var ids []string
	table := 0
	for first := true; ; first = false {
		var (
			roundIDs     []string
			roundTable   = table
			roundDeleted int64
			done         bool
		)
		round := func(tx *Repository) error {
			var err error
			if first {
				roundIDs, err = tx.purgeIDs(ctx, p.Claim, []any{before, n})
			} else if locking {
				roundIDs, err = tx.purgeIDs(ctx, p.Lock, padIDs(nil, ids))
			} else {
				roundIDs = ids
			}
			if err != nil || len(roundIDs) == 0 {
				done = true
				return err
			}
			vars := padIDs([]any{PurgeChildRows}, roundIDs)
			sent := 0
			for rows := int64(0); roundTable < len(p.Children) && rows < PurgeChildRows && (!p.OneDelete || sent == 0); sent++ {
				k, err := tx.exec(ctx, dialect.PurgeChildTables[roundTable], p.Children[roundTable].SQL, p.Children[roundTable].Args(vars))
				if err != nil {
					return err
				}
				rows += k
				// Deleting leaf invocations uncovers their parents: the
				// table is done only when no leaf is left.
				if k == 0 || (roundTable > 0 && k < PurgeChildRows) {
					roundTable++
				}
			}
			if roundTable < len(p.Children) || (p.OneDelete && sent > 0) {
				return nil
			}
			vars[0] = before
			roundDeleted, err = tx.exec(ctx, "feature_runs", p.Runs.SQL, p.Runs.Args(vars))
			done = true
			return err
		}
		for attempt := 1; ; attempt++ {
			if locking {
				err = r.transaction(ctx, p.TxOptions, round)
			} else {
				err = round(r)
			}
			if err != nil && locking && attempt < maxAttempts && r.dialect.Retry != nil && !r.inTransaction() && r.dialect.Retry(err) && ctx.Err() == nil {
				// A deadlock rolled the round back: run it again.
				roundIDs, roundTable, roundDeleted, done = nil, table, 0, false
				continue
			}
			break
		}
		if err != nil {
			return deleted, more, err
		}
		if first {
			more = len(roundIDs) == n
		}
		ids, table = roundIDs, roundTable
		deleted += int(roundDeleted)
		if done {
			return deleted, more, nil
		}
	}
}

// purgeIDs runs st, which returns run IDs, and returns them.
func (r *Repository) purgeIDs(ctx context.Context, st *dialect.Statement, vars []any) ([]string, error) {
	var ids []string
	err := r.writeRows(ctx, "feature_runs", st.SQL, st.Args(vars), func(rows *sql.Rows) error {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		ids = append(ids, id)
		return nil
	})
	return ids, err
}

// padIDs appends to vars the IDs ids, then the last again up to
// dialect.PurgeRuns of them, as the purge statements take.
func padIDs(vars []any, ids []string) []any {
	for _, id := range ids {
		vars = append(vars, id)
	}
	for range dialect.PurgeRuns - len(ids) {
		vars = append(vars, ids[len(ids)-1])
	}
	return vars
}
