// Package persistencetest checks that a workflow's steps keep the promise
// of package repository: a step the engine runs again, runs many times at
// once, or runs once more after later steps as a zombie, leaves the
// database exactly as running it once did.
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
// A zombie is an attempt of a step that the engine gave up on, such as a
// timed-out activity, but that still writes after later steps ran. By
// default RequireReplaySafe runs each step once more after the last, as a
// zombie would. A zombie of a step that moves a run's phase or a sandbox's
// status takes the row back, unless the step's writes are fenced by
// [repository.Repository.AtStep], as a workflow on a durable engine fences
// them with each step's ID. [FenceSteps] gives each step's Run the
// Repository at the step's position; [NoZombies] leaves the zombie mode
// out.
//
// [Open] gives a fresh, migrated in-memory SQLite; [OpenPostgres] a fresh
// schema on a PostgreSQL server. [Snapshot] and [Diff] compare the five
// tables of any two databases, as RequireReplaySafe does.
package persistencetest
