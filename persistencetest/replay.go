package persistencetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dialects"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// Step is one step of a durable workflow: the unit an engine checkpoints,
// and runs again when the process died before the checkpoint.
type Step struct {
	// Name identifies the step in failure messages.
	Name string
	// Run executes the step's writes through repo. It is called any
	// number of times, concurrently too, and after later steps ran, as an
	// engine and its zombies may. What it needs from earlier steps, or
	// from an engine's memoised clock or random values, it should capture
	// as a fixed input. repo is unfenced, or with [FenceSteps] at the
	// step's position.
	Run func(ctx context.Context, repo *repository.Repository) error
}

// copies is how many goroutines run each step at once in the concurrent
// mode: enough for every interleaving of a check and a write to occur.
const copies = 8

// RequireReplaySafe runs steps on fresh databases from open: once cleanly,
// then under each replay mode, and fails tb with a readable diff when any
// resulting database differs from the clean one.
//
// The modes, each on a database of its own:
//
//   - each step runs twice in a row, as when an engine retries a step whose
//     checkpoint was lost, or delivers an event twice;
//   - each step runs on 8 goroutines at once, as when a timed-out step is
//     retried while its first execution still runs;
//   - for each step k, the run crashes after step k's writes and resumes at
//     step k, which runs again, as engines that memoise finished steps do
//     (DBOS, Inngest, Temporal activities);
//   - the zombie mode: for each step k, the steps run to the end, and step
//     k runs once more after each later step, as a zombie would: an
//     attempt of the step that the engine gave up on (a timed-out
//     activity, a cancelled statement) but that still writes after later
//     steps ran. The error it returns,
//     if any, is ignored, since nobody awaits it. Steps that move a run's
//     phase or a sandbox's status back and forth pass it only fenced, by
//     [repository.Repository.AtStep]: see [FenceSteps]. [NoZombies] leaves
//     the mode out;
//   - with [ReplayFromStart], for each step k, the run crashes after step
//     k's writes and replays from the first step.
//
// After each step of the first two modes, after the step run again in the
// crash modes, after the zombie, and at the end of every mode, the
// database must equal the clean run's at the same point, as [Diff]
// compares them: every column of the five tables, times only as set or
// unset and IDs the package generated only as generated (see [Snapshot]).
// Every execution of a step but a zombie's must return nil. The message of
// a failure names the mode, the step, and the first rows that differ, the
// clean run's beside the mode's. Each mode stops at its first failure; tb
// fails once every mode ran.
//
// Each step's Run gets a Repository on the mode's database: unfenced, or,
// with [FenceSteps], at the step's position in steps (1, 2, …), in every
// mode.
//
// open must return a fresh, migrated database each time it is called, as
// [Open] does, or a closure calling [OpenPostgres]. RequireReplaySafe
// closes the idle connections of each database when done with it, so that
// a server is not left holding connections for every crash point.
// Options: [FenceSteps], [NoZombies], [ReplayFromStart], [CompareTimes],
// [OfRun], [InSchema].
func RequireReplaySafe(tb testing.TB, open func(testing.TB) *gorm.DB, steps []Step, opts ...Option) {
	tb.Helper()
	r := &replayer{tb: tb, ctx: tb.Context(), open: open, steps: steps, cfg: newConfig(opts), opts: opts}
	if msg := r.cleanRun(); msg != "" {
		tb.Fatalf("%s", msg)
	}
	modes := []func() string{r.twice, r.concurrently, r.crashAndResume}
	if !r.cfg.noZombies {
		modes = append(modes, r.zombies)
	}
	if r.cfg.replayFromStart {
		modes = append(modes, r.crashAndReplay)
	}
	failed := false
	for _, mode := range modes {
		if msg := mode(); msg != "" {
			tb.Errorf("%s", msg)
			failed = true
		}
	}
	if failed {
		tb.FailNow()
	}
}

type replayer struct {
	tb    testing.TB
	ctx   context.Context
	open  func(testing.TB) *gorm.DB
	steps []Step
	cfg   config
	opts  []Option
	// clean[i] is the clean run's database after its first i steps.
	clean []Snapshot
	// schemas are the tenant schemas of the databases open returned,
	// with InSchema.
	schemas map[*gorm.DB]string
}

// database opens a fresh database and returns it with a Repository on it
// and a function that releases it.
func (r *replayer) database() (*gorm.DB, *repository.Repository, func()) {
	r.tb.Helper()
	db := r.open(r.tb)
	release := func() {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.SetMaxIdleConns(0)
		}
	}
	if r.cfg.schema == "" {
		return db, repository.New(db), release
	}
	schema := tenantSchema(r.tb, db, r.cfg.schema)
	if r.schemas == nil {
		r.schemas = map[*gorm.DB]string{}
	}
	r.schemas[db] = schema
	return db, repository.New(db, repository.InSchema(schema)), release
}

// tenantSchema migrates, in db, a tenant schema named after name but of
// its own, and drops it when tb's test ends. The databases open returns
// may share a server, on which one schema name (a database name, on
// MariaDB) would be one schema for all of them.
func tenantSchema(tb testing.TB, db *gorm.DB, name string) string {
	tb.Helper()
	schema := fmt.Sprintf("%.50s_%s", name, randomHex(4))
	d, err := dialects.Of(db)
	if err != nil {
		tb.Fatalf("persistencetest: %v", err)
	}
	if err := migrate.Up(tb.Context(), db, migrate.InSchema(schema)); err != nil {
		tb.Fatalf("persistencetest: %v", err)
	}
	tb.Cleanup(func() {
		// The test's context is done by now: give the drop its own.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := db.WithContext(ctx).Exec(fmt.Sprintf(d.Schemas.Drop, db.Statement.Quote(schema))).Error; err != nil {
			tb.Errorf("persistencetest: drop schema %s: %v", schema, err)
		}
	})
	return schema
}

func (r *replayer) snapshot(db *gorm.DB) Snapshot {
	r.tb.Helper()
	opts := r.opts
	if schema, ok := r.schemas[db]; ok {
		opts = append(slices.Clip(opts), InSchema(schema))
	}
	return TakeSnapshot(r.tb, db, opts...)
}

// run executes step i, turning a panic into an error so that a broken step
// fails the test with a message rather than killing it. With FenceSteps,
// the step's writes are made at its position.
func (r *replayer) run(repo *repository.Repository, i int) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	if r.cfg.fence {
		repo = repo.AtStep(int64(i) + 1)
	}
	return r.steps[i].Run(r.ctx, repo)
}

func (r *replayer) cleanRun() string {
	db, repo, release := r.database()
	defer release()
	r.clean = append(r.clean[:0], r.snapshot(db))
	for i := range r.steps {
		if err := r.run(repo, i); err != nil {
			return fmt.Sprintf("persistencetest: the clean run failed: %s, returned: %v", r.step(i), err)
		}
		r.clean = append(r.clean, r.snapshot(db))
	}
	return ""
}

// step names step i for messages.
func (r *replayer) step(i int) string {
	return fmt.Sprintf("step %d of %d, %q", i+1, len(r.steps), r.steps[i].Name)
}

// advice closes the message of a failure that shows differing rows.
const advice = "A replay-safe step leaves the same rows however often it runs: derive IDs with repository.StableID from the step's input, take every value from that input rather than from the clock or a random source, and write only through the Repository, whose writes are safe to repeat."

// failure is the message of a failed mode.
func (r *replayer) failure(mode, what string, d Differences) string {
	return r.failureAs(mode, what, d, "replay", advice)
}

// failureAs is the message of a failed mode, whose database is headed
// gotName beside the clean run's, closed by advice when rows differ.
func (r *replayer) failureAs(mode, what string, d Differences, gotName, advice string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "persistencetest: not replay-safe when %s: %s", mode, what)
	if d != nil {
		fmt.Fprintf(&b, ", the database differs from the clean run's in %s:\n", plural(len(d), "row"))
		b.WriteString(d.Describe("clean run", gotName, 3))
		b.WriteString(advice)
	}
	return b.String()
}

// compare returns the differences of db from the clean run after its
// first n steps.
func (r *replayer) compare(db *gorm.DB, n int) Differences {
	r.tb.Helper()
	return Diff(r.clean[n], r.snapshot(db))
}

func (r *replayer) twice() string {
	const mode = "each step runs twice in a row"
	db, repo, release := r.database()
	defer release()
	for i := range r.steps {
		for n := range 2 {
			if err := r.run(repo, i); err != nil {
				return r.failure(mode, fmt.Sprintf("%s, returned an error on execution %d: %v", r.step(i), n+1, err), nil)
			}
		}
		if d := r.compare(db, i+1); d != nil {
			return r.failure(mode, fmt.Sprintf("after %s, ran twice", r.step(i)), d)
		}
	}
	return ""
}

func (r *replayer) concurrently() string {
	mode := fmt.Sprintf("each step runs on %d goroutines at once", copies)
	db, repo, release := r.database()
	defer release()
	for i := range r.steps {
		errs := Concurrently(copies, func(int) error { return r.run(repo, i) })
		if msg := summarize(errs); msg != "" {
			return r.failure(mode, fmt.Sprintf("%s, returned %s", r.step(i), msg), nil)
		}
		if d := r.compare(db, i+1); d != nil {
			return r.failure(mode, fmt.Sprintf("after %s, ran on %d goroutines", r.step(i), copies), d)
		}
	}
	return ""
}

func (r *replayer) crashAndResume() string {
	const mode = "a crash after a step's writes resumes at that step"
	for k := range r.steps {
		if msg := r.crashAt(k, mode, k); msg != "" {
			return msg
		}
	}
	return ""
}

func (r *replayer) crashAndReplay() string {
	const mode = "a crash after a step's writes replays from the first step"
	for k := range r.steps {
		if msg := r.crashAt(k, mode, 0); msg != "" {
			return msg
		}
	}
	return ""
}

// zombieMode names the zombie mode in failure messages.
const zombieMode = "each step runs again as a zombie after each later step"

// zombies is the zombie mode: for each step k, the steps run to the end,
// with step k once more after each later one.
func (r *replayer) zombies() string {
	for k := range r.steps {
		// With the first step's zombie, the database is also compared
		// before each zombie, so that a step that differs on a database
		// of its own is named; with the others, only after each zombie.
		if msg := r.zombie(k, k == 0); msg != "" {
			return msg
		}
	}
	return ""
}

// zombie runs the steps to the end, and step k again after each step
// after it (after k itself when it is the last), comparing the database
// after each zombie with the clean run's at the same point: a zombie may
// land at any time after the engine gave up on it, before the rows it
// moved are final.
func (r *replayer) zombie(k int, everyStep bool) string {
	db, repo, release := r.database()
	defer release()
	last := len(r.steps) - 1
	for i := range r.steps {
		if err := r.run(repo, i); err != nil {
			return r.failure(zombieMode, fmt.Sprintf("with zombies of %s, %s, returned: %v", r.step(k), r.step(i), err), nil)
		}
		if everyStep {
			if d := r.compare(db, i+1); d != nil {
				return r.failure(zombieMode, fmt.Sprintf("before its zombie, after %s", r.step(i)), d)
			}
		}
		if i < k || (i == k && k != last) {
			continue
		}
		// The engine gave up on the zombie: nobody sees what it returns.
		_ = r.run(repo, k)
		if d := r.compare(db, i+1); d != nil {
			after := r.step(i)
			if i == k {
				after = "the last step"
			}
			return r.failureAs(zombieMode, fmt.Sprintf("%s, ran again after %s", r.step(k), after), d, "zombie", r.zombieAdvice())
		}
	}
	return ""
}

// zombieAdvice closes the message of a zombie that changed the database.
func (r *replayer) zombieAdvice() string {
	const leave = "A zombie must leave the rows as the later steps left them: write only through the Repository, from the step's input"
	if !r.cfg.fence {
		return leave + ", and make each step's writes through repo.AtStep(n), n the step's position in the workflow or the engine's step ID, so that a phase or sandbox move that a later step superseded changes nothing (FenceSteps() does that here)."
	}
	return leave + "; at its step, a phase or sandbox move that a later step superseded changes nothing, and the Repository's other writes never take a row back. A step that calls AtStep itself must pass its own position."
}

// crashAt runs the steps up to k, crashes, and runs them again from step
// from to the last. It compares the database after step k ran again and at
// the end; when the end differs, it runs the crash again comparing after
// every step, to name the first that differs, which is too slow to do on
// every run.
func (r *replayer) crashAt(k int, mode string, from int) string {
	msg := r.crashOnce(k, mode, from, false)
	if strings.Contains(msg, "and ran to the end") {
		if detailed := r.crashOnce(k, mode, from, true); detailed != "" {
			return detailed
		}
	}
	return msg
}

func (r *replayer) crashOnce(k int, mode string, from int, everyStep bool) string {
	db, repo, release := r.database()
	defer release()
	crash := fmt.Sprintf("crashed after %s", r.step(k))
	for i := 0; i <= k; i++ {
		if err := r.run(repo, i); err != nil {
			return r.failure(mode, fmt.Sprintf("before the crash, %s, returned: %v", r.step(i), err), nil)
		}
	}
	for i := from; i < len(r.steps); i++ {
		if err := r.run(repo, i); err != nil {
			return r.failure(mode, fmt.Sprintf("%s, then %s, returned: %v", crash, r.step(i), err), nil)
		}
		// Until the steps that ran before the crash have all run again,
		// the database holds writes of later steps than the clean run's.
		var what string
		switch {
		case i == k:
			what = fmt.Sprintf("%s, and after it ran again", crash)
		case i > k && everyStep:
			what = fmt.Sprintf("%s, and then after %s", crash, r.step(i))
		case i == len(r.steps)-1:
			what = fmt.Sprintf("%s, and ran to the end", crash)
		default:
			continue
		}
		if d := r.compare(db, i+1); d != nil {
			return r.failure(mode, what, d)
		}
	}
	return ""
}

// summarize describes the errors of the goroutines, each distinct one
// once; it returns "" when all returned nil.
func summarize(errs []error) string {
	var distinct []string
	count := map[string]int{}
	failed := 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		failed++
		if count[err.Error()] == 0 {
			distinct = append(distinct, err.Error())
		}
		count[err.Error()]++
	}
	if failed == 0 {
		return ""
	}
	parts := make([]string, len(distinct))
	for i, msg := range distinct {
		parts[i] = fmt.Sprintf("%s (%d of %d)", msg, count[msg], len(errs))
	}
	return "errors: " + strings.Join(parts, "; ")
}

// plural returns n and noun, in the plural unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// Concurrently calls fn from n goroutines released together, so that they
// race, and returns their errors, goroutine i's at index i. It is how
// [RequireReplaySafe] runs a step's copies; use it to race calls of your
// own.
func Concurrently(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	return errs
}
