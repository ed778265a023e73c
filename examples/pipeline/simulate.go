package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/persistencetest"
	"github.com/agentpipeline/persistence/repository"
)

// crashStep is the step after whose write the simulated process dies,
// before the engine journals it: the write is in the database, but the
// engine will run the step again.
const crashStep = "implement/remember"

// simulate migrates db, drives one feature run through the workflow with a
// crash and a replay, and prints the run's timeline and usage.
func simulate(ctx context.Context, db *gorm.DB, out io.Writer) error {
	if err := migrate.Up(ctx, db); err != nil {
		return err
	}
	repo := repository.New(db)
	// The event that triggered the workflow identifies it; every ID below
	// is derived from it, never drawn at random.
	eventID := "feature-request/" + uuid.NewString()
	wf := &workflow{repo: repo, eventID: eventID, run: repository.StableID(eventID, "run"), start: time.Now().UTC()}
	eng := &engine{journal: map[string]bool{}, crashAfter: crashStep, out: out}

	fmt.Fprintf(out, "Feature run %s (database: %s)\n\n", wf.run, repo.Database())
	err := wf.execute(ctx, eng)
	if !errors.Is(err, errCrash) {
		return fmt.Errorf("expected the simulated crash, got %w", err)
	}
	// Every column as stored: the replay may change nothing, not even a
	// timestamp.
	before, err := persistencetest.ReadSnapshot(ctx, db, persistencetest.Exact())
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n!! crash after step %q wrote to the database, before the engine recorded it\n", crashStep)
	fmt.Fprintf(out, ">> replaying the workflow from the start (%d steps memoized, the rest run again)\n\n", len(eng.journal))
	eng.replaying = true
	eng.afterReplayedCrash = func() error {
		after, err := persistencetest.ReadSnapshot(ctx, db, persistencetest.Exact())
		if err != nil {
			return err
		}
		if d := persistencetest.Diff(before, after); len(d) > 0 {
			return fmt.Errorf("replay check failed: the re-executed step changed the database:\n%s", d.Describe("before", "after", 3))
		}
		fmt.Fprintf(out, "    replay check: the database is identical to before the crash (%d rows in 5 tables)\n", before.Rows())
		return nil
	}
	if err := wf.execute(ctx, eng); err != nil {
		return err
	}
	fmt.Fprintln(out)
	return report(ctx, out, repo, wf.run)
}

// errCrash is the simulated death of the process.
var errCrash = errors.New("simulated crash")

// engine is a toy durable workflow engine in the style of Inngest: it runs
// the workflow from the start on every execution and skips the steps its
// journal says completed. A step is journaled after it returns, so a crash
// between the two runs the step again: exactly the case the repository's
// replay safety is for.
//
// It numbers the steps of each execution from 1, in the order the
// workflow reaches them, journaled or not, as DBOS numbers its step IDs:
// the same step gets the same number in every execution of a
// deterministic workflow.
type engine struct {
	journal map[string]bool
	// order lists the steps journaled, in order.
	order []string
	// position is the number of the last step reached in this execution.
	position   int64
	crashAfter string
	crashed    bool
	replaying  bool
	out        io.Writer
	// afterReplayedCrash runs once the replay has re-executed crashAfter.
	afterReplayedCrash func() error
}

// begin starts an execution of the workflow: its steps are numbered from
// 1 again.
func (e *engine) begin() { e.position = 0 }

// step runs fn as the step name, with the step's number, unless the
// journal has it.
func (e *engine) step(ctx context.Context, name, what string, fn func(ctx context.Context, step int64) error) error {
	e.position++
	if e.journal[name] {
		return nil
	}
	if err := fn(ctx, e.position); err != nil {
		return fmt.Errorf("step %s: %w", name, err)
	}
	mark := "✓"
	if e.replaying && name == e.crashAfter {
		mark = "↻" // ran twice: once before the crash, once now
	}
	fmt.Fprintf(e.out, "  %s %-26s %s\n", mark, name, what)
	if name == e.crashAfter {
		if !e.crashed {
			e.crashed = true
			return errCrash
		}
		if err := e.afterReplayedCrash(); err != nil {
			return err
		}
	}
	e.journal[name] = true
	e.order = append(e.order, name)
	return nil
}

// report prints the timeline and the usage of run.
func report(ctx context.Context, out io.Writer, repo *repository.Repository, run uuid.UUID) error {
	tl, err := repo.RunTimeline(ctx, run)
	if err != nil {
		return err
	}
	usage, err := repo.RunUsage(ctx, run)
	if err != nil {
		return err
	}

	fmt.Fprintln(out, "Timeline")
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "  PHASE\tAGENT\tMODEL\tSTATUS\tTOKENS\tCACHE READ/WRITE\tCOST (USD)\tDURATION\t")
	var invocation func(inv repository.InvocationTimeline, depth int)
	invocation = func(inv repository.InvocationTimeline, depth int) {
		agent := inv.Agent
		if depth > 0 {
			// A sub-agent, under the invocation that called it.
			agent = strings.Repeat("  ", depth-1) + "└ " + agent
		}
		fmt.Fprintf(w, "  \t%s\t%s\t%s\t%s\t%s/%s\t%s\t%s\t\n", agent, inv.Model, inv.Status,
			thousands(inv.InputTokens+inv.OutputTokens), thousands(inv.CacheReadInputTokens), thousands(inv.CacheWriteInputTokens),
			repository.FormatNanoUSD(inv.CostNanoUSD), duration(inv.CreatedAt, inv.FinishedAt))
		for _, sub := range inv.SubInvocations {
			invocation(sub, depth+1)
		}
	}
	for _, p := range tl.Phases {
		fmt.Fprintf(w, "  %s\t\t\t%s\t\t\t\t%s\t\n", p.Phase, p.Status, duration(p.CreatedAt, p.FinishedAt))
		for _, inv := range p.Invocations {
			invocation(inv, 0)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, s := range tl.Sandboxes {
		fmt.Fprintf(out, "  sandbox %s (%s): %s\n", s.ID, s.Provider, s.Status)
	}
	for _, c := range tl.CTAEvents {
		fmt.Fprintf(out, "  CTA %s (%s): %s", c.ID, c.Kind, c.Status)
		if len(c.ResponseData) > 0 {
			fmt.Fprintf(out, ", answer %s", c.ResponseData)
		}
		fmt.Fprintln(out)
	}
	var memories []any
	if err := json.Unmarshal(tl.Run.Memories, &memories); err != nil {
		return err
	}
	fmt.Fprintf(out, "  run: %s in phase %s, %d memories\n\n", tl.Run.Status, tl.Run.Phase, len(memories))

	fmt.Fprintln(out, "Usage")
	w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "  BY\tKEY\tINVOCATIONS\tTOKENS\tCACHE READ/WRITE\tCOST (USD)\t")
	row := func(by, key string, u repository.UsageTotals) {
		fmt.Fprintf(w, "  %s\t%s\t%d\t%s\t%s/%s\t%s\t\n", by, key, u.Invocations, thousands(u.TotalTokens()),
			thousands(u.CacheReadInputTokens), thousands(u.CacheWriteInputTokens), u.CostUSD())
	}
	for _, g := range usage.ByAgent {
		row("agent", g.Key, g.UsageTotals)
	}
	for _, g := range usage.ByModel {
		row("model", g.Key, g.UsageTotals)
	}
	for _, g := range usage.ByProvider {
		row("provider", g.Key, g.UsageTotals)
	}
	row("total", "", usage.UsageTotals)
	return w.Flush()
}

func duration(from time.Time, to *time.Time) string {
	if to == nil {
		return "-"
	}
	return to.Sub(from).Round(10 * time.Microsecond).String()
}

// thousands formats n with thousands separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
