// Package persistencetest checks that a workflow's steps keep the promise
// of package repository: a step the engine runs again, or runs many times
// at once, leaves the database exactly as running it once did.
//
// The package keeps that promise for each of its writes, but only when the
// caller's steps keep theirs. A step that draws an ID from uuid.New(),
// appends a clock reading as a memory, or adds a raw update of its own
// writes something else each time it runs. [RequireReplaySafe] finds such
// steps in a test: it runs them once on a fresh database, then again the
// ways durable engines re-execute steps, and compares every row.
//
//	func TestOnboardingIsReplaySafe(t *testing.T) {
//		persistencetest.RequireReplaySafe(t, persistencetest.Open, onboardingSteps("evt_1"))
//	}
//
// [Open] gives a fresh, migrated in-memory SQLite; [OpenPostgres] a fresh
// schema on a PostgreSQL server. [Snapshot] and [Diff] compare the five
// tables of any two databases, as RequireReplaySafe does.
package persistencetest
