package persistencetest

import "github.com/google/uuid"

// Option changes how [RequireReplaySafe] runs steps, or how snapshots
// ([ReadSnapshot], [TakeSnapshot]) read the tables. Each option says which
// of them it affects; the others ignore it. Options are made only by this
// package's functions ([ReplayFromStart], [FenceSteps], [NoZombies],
// [CompareTimes], [OfRun], [Exact]): a struct rather than a func type, so
// that its signature names no unexported type and the settings it changes
// can grow without breaking callers.
type Option struct {
	apply func(*config)
}

type config struct {
	// replayFromStart adds the mode that replays every step from the first
	// after a crash.
	replayFromStart bool
	// noZombies leaves out the zombie mode.
	noZombies bool
	// fence gives each step's Run the Repository at the step's position.
	fence bool
	// exact compares every column as stored.
	exact bool
	// times are the time columns compared by value.
	times map[string]bool
	// run limits a snapshot to one feature run's rows, unless it is
	// uuid.Nil.
	run uuid.UUID
	// schema is the tenant schema to work in, if any.
	schema string
}

func newConfig(opts []Option) config {
	c := config{times: map[string]bool{}}
	for _, o := range opts {
		if o.apply != nil {
			o.apply(&c)
		}
	}
	return c
}

// ReplayFromStart adds a stricter mode to [RequireReplaySafe]: for each
// step, the run crashes after that step's writes and the engine replays the
// workflow from its first step, executing every step again. Engines that do
// not memoise finished steps work this way, and so does a workflow whose
// journal is lost. Steps must then be safe to re-execute after later steps
// ran: a step that moves a run to a phase, for example, must accept that
// the run has since completed (the move then returns
// [repository.ErrInvalidTransition]).
func ReplayFromStart() Option {
	return Option{func(c *config) { c.replayFromStart = true }}
}

// FenceSteps makes [RequireReplaySafe] give each step's Run
// repo.AtStep(i), where i is the step's position in steps (1, 2, …), in
// every mode, as a workflow on a durable engine passes each step's ID or
// position to [repository.Repository.AtStep]. A fenced move that a later
// step superseded then changes nothing, which the zombie mode requires of
// a workflow whose steps move a run's phase or a sandbox's status back
// and forth. Without it, each step gets the Repository as it is, unfenced.
// Steps that call AtStep themselves, with their position, need not set it.
func FenceSteps() Option {
	return Option{func(c *config) { c.fence = true }}
}

// NoZombies leaves out the zombie mode of [RequireReplaySafe], in which
// each step runs once more after each later step. Leave it on unless the
// engine never runs a step after a later one began: one that ends every
// attempt of a step it gave up on, and waits for its writes to end,
// before it retries the step or moves on. Steps that fail the mode are
// fixed by fencing them ([FenceSteps], or [repository.Repository.AtStep]
// in the steps), not by this option.
func NoZombies() Option {
	return Option{func(c *config) { c.noZombies = true }}
}

// CompareTimes compares the named time columns, each "column" (in every
// table) or "table.column", by value, to the microsecond, rather than only
// as set or unset. Use it for times a step
// takes from its input, such as a CTA event's "expires_at" computed from
// the triggering event, where a replay that stored another time would be a
// bug. Times set from the database's clock (created_at, updated_at,
// completed_at and the like) differ between any two runs and must not be
// named. It affects [RequireReplaySafe] and snapshots.
func CompareTimes(columns ...string) Option {
	return Option{func(c *config) {
		for _, col := range columns {
			c.times[col] = true
		}
	}}
}

// OfRun limits a snapshot to the feature run runID and the rows that
// belong to it, so that runs sharing a database can be compared one by one.
// It affects [RequireReplaySafe] and snapshots.
func OfRun(runID uuid.UUID) Option {
	return Option{func(c *config) { c.run = runID }}
}

// Exact makes a snapshot keep every column as the database returned it:
// times to the microsecond, generated IDs by value and JSON by its stored
// text. It is for comparing one database before and after a call, where
// nothing may move, not even updated_at; two databases written at
// different times always differ under it.
func Exact() Option {
	return Option{func(c *config) { c.exact = true }}
}

// InSchema makes [RequireReplaySafe] and snapshots work on the tables of
// a tenant schema, as a Repository made with repository.InSchema does.
// Snapshots read the tables of the schema name. RequireReplaySafe
// migrates, in each database open returns, a schema of its own whose name
// starts with name (the databases may share a server, where one name would
// be one schema), gives the steps a Repository of it, compares its tables,
// and drops it when the test ends.
func InSchema(name string) Option {
	return Option{func(c *config) { c.schema = name }}
}
