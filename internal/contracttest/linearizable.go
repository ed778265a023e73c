package contracttest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// Linearizable checks the contract's promise of linearizable answers with
// porcupine, a checker written outside this project. Each history is a few
// goroutines making random calls on a couple of rows of one table (its
// creates, its unfenced writes, its read, and for CTA events the sweeper)
// with the time each call was made and returned. Porcupine then searches
// for one order of the calls, consistent with those times, in which the
// serial model of the contract gives every answer the calls got.
//
// Races checks outcome counts of a few fixed calls racing at once, fenced
// moves among them; this checks the order of many calls, reads included,
// which is what a sweep that returns without an event a later read sees
// pending gets wrong. Fenced moves, and their model, stay in Races.
//
// Each history is checked row by row, as the contract promises ("the
// concurrent calls on that row"): each row's calls, with each sweep as a
// call on every row, which it timed out or left. For calls on one row
// that is the same as checking all rows together (linearizability is
// local); the sweeper, a call on several rows, is also checked as one
// step over all rows, which holds on SQLite and MariaDB and, on
// PostgreSQL, not when an event is created while a sweep's statement runs
// (see Repository.ExpireCTAEvents): there such histories are counted and
// logged. A failure shows the calls in the order they were made, and the
// path of porcupine's visualization of the history. Set
// LINEARIZABLE_HISTORIES to make more histories than the 150 of a full run
// (20 with -short).
func Linearizable(t *testing.T, open dbtest.Opener) {
	for _, tb := range []*linTable{linCTAEvents(), linFeatureRuns(), linSandboxes(), linPhaseResults(), linAgentInvocations()} {
		t.Run(tb.name, func(t *testing.T) { tb.check(t, open) })
	}
}

const (
	// linClients goroutines make linCalls calls each in a history.
	linClients = 3
	linCalls   = 5
	// linMaxRows bounds the rows of a history.
	linMaxRows = 3
)

// linSweepNow is the now of every sweep: CTA events due in a history have
// deadlines before it, the others after it.
var linSweepNow = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

// linRow is the model of a row, and what a read of it returns.
type linRow struct {
	exists bool
	status string
	// phase is a run's phase, memories its memories in order, joined by
	// commas.
	phase, memories string
	// value is a CTA event's response, a phase result's or an agent
	// invocation's output.
	value string
	// origin is what the create that made the row wrote and a replayed
	// create keeps: a CTA event's kind, a sandbox's provider, a phase
	// result's phase, an invocation's agent.
	origin string
	// due marks a CTA event whose deadline is at or before linSweepNow.
	// Reads do not return it.
	due bool
}

func (r linRow) String() string {
	if !r.exists {
		return "absent"
	}
	s := r.status
	for _, f := range []struct{ name, v string }{{"phase", r.phase}, {"memories", r.memories}, {"value", r.value}, {"origin", r.origin}} {
		if f.v != "" {
			s += " " + f.name + "=" + f.v
		}
	}
	if r.due {
		s += " due"
	}
	return s
}

// linState is the model's state: every row of a history.
type linState struct {
	rows [linMaxRows]linRow
	n    int
}

func (s linState) String() string {
	parts := make([]string, s.n)
	for i := range s.n {
		parts[i] = fmt.Sprintf("%d: %s", i, s.rows[i])
	}
	return strings.Join(parts, "; ")
}

// linInput is a call: the name of what it does, the row it is made on
// (none for a sweep), its argument and a sweep's limit.
type linInput struct {
	call  string
	row   int
	arg   string
	limit int
}

// linOutput is a call's answer: its error, the row a read returned, and the
// rows a sweep timed out, as the sorted row numbers joined by commas.
type linOutput struct {
	answer answer
	row    linRow
	swept  string
}

// linCall is one kind of call a history makes.
type linCall struct {
	name   string
	weight int
	// arg returns the argument of the call that goroutine g makes k-th;
	// nil for none.
	arg func(rnd *rand.Rand, g, k int) string
	// limit returns a sweep's limit.
	limit func(rnd *rand.Rand) int
	// noRow is true for a call on no one row: the sweep.
	noRow bool
	// model gives the answer the call gets on a row, and the row it
	// leaves; step, for the sweep, checks the call's output against the
	// whole state.
	model func(r linRow, arg string) (answer, linRow)
	step  func(s linState, in linInput, out linOutput) (bool, linState)
	// do makes the call.
	do func(e *env, h *linHistory, in linInput) linOutput
}

// linHistory is one history's rows: their IDs, their run and, for CTA
// events, their deadlines.
type linHistory struct {
	run  uuid.UUID
	ids  []string
	uids []uuid.UUID
	due  []bool
}

// rowOf returns the row number of id, or -1.
func (h *linHistory) rowOf(id string) int { return slices.Index(h.ids, id) }

// linTable is how histories of one table are made and modelled.
type linTable struct {
	name string
	rows int
	// multiRow is true for a table with a call on several rows: the
	// sweeper.
	multiRow bool
	// due tells, for CTA events, whether row i's deadline has passed.
	due func(i int) bool
	// create makes row i of h with arg; read reads it, as a linRow.
	create func(e *env, h *linHistory, i int, arg string) error
	read   func(e *env, h *linHistory, i int) (linRow, error)
	// start is the status a create gives a row.
	start string
	// writes are the table's writes besides its create.
	writes []linCall
	// cleanup leaves nothing of h that a later history could see.
	cleanup func(e *env, h *linHistory)
}

// calls returns every kind of call a history of tb makes: the create, the
// writes and the read.
func (tb *linTable) calls() []linCall {
	create := linCall{name: "create", weight: 1, arg: oneOf("first", "second"),
		model: func(r linRow, arg string) (answer, linRow) {
			if !r.exists {
				r = tb.created(arg, r.due)
			}
			return answerNil, r
		},
		do: func(e *env, h *linHistory, in linInput) linOutput {
			return linOutput{answer: answerOf(tb.create(e, h, in.row, in.arg))}
		},
	}
	read := linCall{name: "read", weight: 3,
		do: func(e *env, h *linHistory, in linInput) linOutput {
			row, err := tb.read(e, h, in.row)
			return linOutput{answer: answerOf(err), row: row}
		},
	}
	return append([]linCall{create, read}, tb.writes...)
}

// created is the row a create with arg makes.
func (tb *linTable) created(arg string, due bool) linRow {
	r := linRow{exists: true, status: tb.start, origin: arg, due: due}
	if tb.name == "FeatureRuns" {
		r.phase, r.origin = arg, ""
	}
	return r
}

// step is the serial model of tb: whether a call with input in can
// answer out in state s, and the state it leaves.
func (tb *linTable) step(calls []linCall, s linState, in linInput, out linOutput) (bool, linState) {
	c := calls[slices.IndexFunc(calls, func(c linCall) bool { return c.name == in.call })]
	if c.step != nil {
		return c.step(s, in, out)
	}
	r := s.rows[in.row]
	if c.name == "read" {
		if !r.exists {
			return out.answer == answerNotFound, s
		}
		want := r
		want.due = false
		return out.answer == answerNil && out.row == want, s
	}
	a, next := c.model(r, in.arg)
	if a != out.answer {
		return false, s
	}
	s.rows[in.row] = next
	return true, s
}

// describe renders a call and its answer.
func (tb *linTable) describe(in linInput, out linOutput) string {
	var b strings.Builder
	b.WriteString(in.call)
	switch {
	case in.limit > 0:
		fmt.Fprintf(&b, "(limit %d)", in.limit)
	case in.arg != "":
		fmt.Fprintf(&b, "(%d, %s)", in.row, in.arg)
	default:
		fmt.Fprintf(&b, "(%d)", in.row)
	}
	b.WriteString(" → ")
	switch {
	case in.call == "read" && out.answer == answerNil:
		b.WriteString(out.row.String())
	case in.limit > 0 && out.answer == answerNil:
		b.WriteString("[" + out.swept + "]")
	default:
		b.WriteString(out.answer.String())
	}
	return b.String()
}

// check makes tb's histories on a database of their own and fails those
// porcupine finds no linearization of.
func (tb *linTable) check(t *testing.T, open dbtest.Opener) {
	e := setup(t, open)
	sqlDB, err := e.db.DB()
	require.NoError(t, err)
	sqlDB.SetMaxIdleConns(linClients + 1)
	// A bug the check found made a history in 20 (MariaDB's sweeper) to
	// one in 10 (PostgreSQL's) non-linearizable: 150 histories miss one
	// so rare about once in 2,000 runs.
	histories := 150
	if testing.Short() {
		histories = 20
	}
	if n, err := strconv.Atoi(os.Getenv("LINEARIZABLE_HISTORIES")); err == nil && n > 0 {
		histories = n
	}
	seed := uint64(time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(seed, 0x11ea))
	calls := tb.calls()
	// On PostgreSQL a sweep's statement does not see an event created
	// while it runs (see Repository.ExpireCTAEvents): its answer is
	// linearizable event by event, as the contract has it, but not always
	// as one step over all of them.
	wholeUnpromised := tb.multiRow && e.db.Dialector.Name() == "postgres"
	began := time.Now()
	failed, notWhole, ops := 0, 0, 0
	for h := range histories {
		hist, start := tb.prepare(e, rnd)
		plans := tb.plan(rnd, calls)
		history := tb.run(e, hist, calls, plans)
		if tb.cleanup != nil {
			tb.cleanup(e, hist)
		}
		ops += len(history)
		model := porcupine.Model{
			Partition: tb.partition,
			Init:      func() any { return start },
			Step: func(s, in, out any) (bool, any) {
				return tb.step(calls, s.(linState), in.(linInput), out.(linOutput))
			},
			DescribeOperation: func(in, out any) string { return tb.describe(in.(linInput), out.(linOutput)) },
			DescribeState:     func(s any) string { return s.(linState).String() },
		}
		res, info := porcupine.CheckOperationsVerbose(model, history, 30*time.Second)
		if res != porcupine.Ok {
			if failed++; failed <= 3 {
				t.Errorf("history %d (seed %d): porcupine says %s, row by row; %s", h, seed, res, tb.report(model, info, history, start))
			}
			continue
		}
		if !tb.multiRow {
			continue // every call is on one row: row by row is the whole
		}
		model.Partition = nil
		if res, info = porcupine.CheckOperationsVerbose(model, history, 30*time.Second); res == porcupine.Ok {
			continue
		}
		switch notWhole++; {
		case wholeUnpromised:
			if notWhole <= 3 {
				t.Logf("history %d (seed %d): porcupine says %s for all rows together (not promised here); %s", h, seed, res, tb.report(model, info, history, start))
			}
		case notWhole <= 3:
			t.Errorf("history %d (seed %d): porcupine says %s for all rows together; %s", h, seed, res, tb.report(model, info, history, start))
		}
	}
	t.Logf("%d histories of %d calls in all, checked in %s", histories, ops, time.Since(began).Round(time.Millisecond))
	if failed > 0 {
		t.Errorf("%d of %d histories are not linearizable row by row", failed, histories)
	}
	switch {
	case notWhole > 0 && wholeUnpromised:
		t.Logf("%d of %d histories are linearizable row by row but not for all rows together", notWhole, histories)
	case notWhole > 0:
		t.Errorf("%d of %d histories are linearizable row by row but not for all rows together", notWhole, histories)
	}
}

// partition splits a history row by row: each row's calls, and each sweep
// as a call on every row, which it timed out or left.
func (tb *linTable) partition(history []porcupine.Operation) [][]porcupine.Operation {
	parts := make([][]porcupine.Operation, tb.rows)
	for _, op := range history {
		in := op.Input.(linInput)
		for i := range parts {
			if in.row == i || in.row < 0 {
				part, on := op, in
				on.row = i
				part.Input = on
				parts[i] = append(parts[i], part)
			}
		}
	}
	return parts
}

// report renders a history that is not linearizable: where porcupine's
// visualization of it is, and its calls in the order they were made.
func (tb *linTable) report(model porcupine.Model, info porcupine.LinearizationInfo, history []porcupine.Operation, start linState) string {
	var b strings.Builder
	if f, err := os.CreateTemp("", "linearizable-"+tb.name+"-*.html"); err == nil {
		if err := porcupine.Visualize(model, info, f); err == nil {
			fmt.Fprintf(&b, "visualization: %s\n", f.Name())
		}
		f.Close()
	}
	fmt.Fprintf(&b, "start: %s\n", start)
	sorted := slices.Clone(history)
	slices.SortFunc(sorted, func(a, b porcupine.Operation) int { return int(a.Call - b.Call) })
	for _, op := range sorted {
		fmt.Fprintf(&b, "  client %d  %8.3f–%8.3f ms  %s\n", op.ClientId, float64(op.Call)/1e6, float64(op.Return)/1e6,
			tb.describe(op.Input.(linInput), op.Output.(linOutput)))
	}
	return b.String()
}

// prepare makes a history's rows, each there at the start or not, and
// returns them with the model's state at the start.
func (tb *linTable) prepare(e *env, rnd *rand.Rand) (*linHistory, linState) {
	h := &linHistory{run: e.newRun()}
	var s linState
	s.n = tb.rows
	for i := range tb.rows {
		u := uuid.New()
		h.uids = append(h.uids, u)
		h.ids = append(h.ids, fmt.Sprintf("lin-%d-%s", i, u))
		h.due = append(h.due, tb.due != nil && tb.due(i))
		s.rows[i].due = h.due[i]
		if rnd.IntN(4) == 0 {
			continue // created, if at all, by the history
		}
		require.NoError(e.t, tb.create(e, h, i, "first"))
		s.rows[i] = tb.created("first", h.due[i])
	}
	return h, s
}

// plan draws each goroutine's calls.
func (tb *linTable) plan(rnd *rand.Rand, calls []linCall) [][]linInput {
	total := 0
	for _, c := range calls {
		total += c.weight
	}
	plans := make([][]linInput, linClients)
	for g := range plans {
		for k := range linCalls {
			w := rnd.IntN(total)
			i := 0
			for w >= calls[i].weight {
				w -= calls[i].weight
				i++
			}
			c := calls[i]
			in := linInput{call: c.name, row: -1}
			if !c.noRow {
				in.row = rnd.IntN(tb.rows)
			}
			if c.arg != nil {
				in.arg = c.arg(rnd, g, k)
			}
			if c.limit != nil {
				in.limit = c.limit(rnd)
			}
			plans[g] = append(plans[g], in)
		}
	}
	return plans
}

// run makes the planned calls, each goroutine its own in turn, all
// released at once, and records when each was made and returned. Some
// calls wait a little first, so that calls meet in many ways.
func (tb *linTable) run(e *env, h *linHistory, calls []linCall, plans [][]linInput) []porcupine.Operation {
	ops := make([][]porcupine.Operation, len(plans))
	pauses := make([][]time.Duration, len(plans))
	for g, plan := range plans {
		for range plan {
			var d time.Duration
			if rand.IntN(3) == 0 {
				d = rand.N(300 * time.Microsecond)
			}
			pauses[g] = append(pauses[g], d)
		}
	}
	t0 := time.Now()
	dbtest.Concurrently(len(plans), func(g int) error {
		for k, in := range plans[g] {
			if pauses[g][k] > 0 {
				time.Sleep(pauses[g][k])
			}
			c := calls[slices.IndexFunc(calls, func(c linCall) bool { return c.name == in.call })]
			call := time.Since(t0).Nanoseconds()
			out := c.do(e, h, in)
			ret := time.Since(t0).Nanoseconds()
			ops[g] = append(ops[g], porcupine.Operation{ClientId: g, Input: in, Call: call, Output: out, Return: ret})
		}
		return nil
	})
	return slices.Concat(ops...)
}

// unique is the argument of a call whose value must be told apart: the
// goroutine's letter and the call's number.
func unique(_ *rand.Rand, g, k int) string { return fmt.Sprintf("%c%d", 'a'+g, k) }

// oneOf returns an argument drawn from values.
func oneOf(values ...string) func(*rand.Rand, int, int) string {
	return func(rnd *rand.Rand, _, _ int) string { return values[rnd.IntN(len(values))] }
}

// onStatus lifts a rowModel, which sees a row's status and phase, to a
// linRow; set, if not nil, records arg on a row the call changed.
func onStatus(m rowModel, set func(r *linRow, arg string)) func(linRow, string) (answer, linRow) {
	return func(r linRow, arg string) (answer, linRow) {
		a, next := m(modelRow{exists: r.exists, status: r.status, phase: r.phase})
		changed := next.status != r.status || next.phase != r.phase
		r.status, r.phase = next.status, next.phase
		if changed && set != nil {
			set(&r, arg)
		}
		return a, r
	}
}

// setValue records arg as a row's value.
func setValue(r *linRow, arg string) { r.value = arg }

// decodeString decodes a JSON string, or returns the text as it is.
func decodeString(raw []byte) string {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return string(raw)
	}
	return s
}

// linCTAEvents makes histories of two events due and one not, with the
// sweeper among their calls.
func linCTAEvents() *linTable {
	return &linTable{
		name: "CTAEvents", rows: 3, start: string(models.CTAPending), multiRow: true,
		due: func(i int) bool { return i < 2 },
		create: func(e *env, h *linHistory, i int, kind string) error {
			expires := linSweepNow.Add(time.Hour)
			if h.due[i] {
				expires = linSweepNow.Add(-time.Duration(i+1) * time.Minute)
			}
			return e.repo.CreateCTAEvent(e.ctx, repository.NewCTAEvent{ID: h.ids[i], FeatureRunID: h.run, Kind: kind, ExpiresAt: expires})
		},
		read: func(e *env, h *linHistory, i int) (linRow, error) {
			c, err := e.repo.GetCTAEvent(e.ctx, h.ids[i])
			if err != nil {
				return linRow{}, err
			}
			r := linRow{exists: true, status: string(c.Status), origin: c.Kind}
			if c.ResponseData != nil {
				r.value = decodeString(c.ResponseData)
			}
			return r, nil
		},
		writes: []linCall{
			{name: "complete", weight: 2, arg: unique,
				model: onStatus(modelMove(string(models.CTACompleted), string(models.CTAPending)), setValue),
				do: func(e *env, h *linHistory, in linInput) linOutput {
					return linOutput{answer: answerOf(e.repo.CompleteCTAEvent(e.ctx, h.ids[in.row], in.arg))}
				}},
			{name: "timeout", weight: 1,
				model: onStatus(modelMove(string(models.CTATimedOut), string(models.CTAPending)), nil),
				do: func(e *env, h *linHistory, in linInput) linOutput {
					return linOutput{answer: answerOf(e.repo.TimeoutCTAEvent(e.ctx, h.ids[in.row]))}
				}},
			{name: "sweep", weight: 4, noRow: true,
				limit: func(rnd *rand.Rand) int { return []int{1, 2, 10}[rnd.IntN(3)] },
				step:  stepSweep,
				do: func(e *env, h *linHistory, in linInput) linOutput {
					ids, err := e.repo.ExpireCTAEvents(e.ctx, linSweepNow, in.limit)
					if err != nil {
						return linOutput{answer: answerOf(err)}
					}
					rows := make([]int, len(ids))
					for j, id := range ids {
						if rows[j] = h.rowOf(id); rows[j] < 0 {
							return linOutput{answer: answer{kind: "error: swept " + id + ", an event of no history running"}}
						}
					}
					return linOutput{answer: answerNil, swept: sweptRows(rows)}
				}},
		},
		// Every event a history left due and pending is timed out before
		// the next, whose sweeps must see only its own.
		cleanup: func(e *env, h *linHistory) {
			for {
				ids, err := e.repo.ExpireCTAEvents(e.ctx, linSweepNow, repository.MaxPageLimit)
				require.NoError(e.t, err)
				if len(ids) < repository.MaxPageLimit {
					return
				}
			}
		},
	}
}

// sweptRows renders the rows a sweep timed out.
func sweptRows(rows []int) string {
	slices.Sort(rows)
	s := make([]string, len(rows))
	for i, r := range rows {
		s[i] = strconv.Itoa(r)
	}
	return strings.Join(s, ",")
}

// stepSweep is the model of ExpireCTAEvents: it times out due, pending
// events, at most limit of them, and every one of them unless it returns
// limit. Which ones a full sweep takes is not modelled: it passes over
// those another call holds at that moment. A sweep made a call on row
// in.row by partition is that row's part of it: it timed the row out, or
// left it, which it may only if the row was not due and pending or the
// sweep returned limit events.
func stepSweep(s linState, in linInput, out linOutput) (bool, linState) {
	if out.answer != answerNil {
		return false, s
	}
	var swept []int
	if out.swept != "" {
		for _, f := range strings.Split(out.swept, ",") {
			i, _ := strconv.Atoi(f)
			swept = append(swept, i)
		}
	}
	if len(swept) > in.limit {
		return false, s
	}
	full := len(swept) == in.limit
	duePending := func(i int) bool {
		r := s.rows[i]
		return r.exists && r.due && r.status == string(models.CTAPending)
	}
	rows := []int{in.row}
	if in.row < 0 {
		rows = rows[:0]
		for i := range s.n {
			rows = append(rows, i)
		}
	}
	for _, i := range rows {
		took := slices.Contains(swept, i)
		switch {
		case took && !duePending(i), !took && duePending(i) && !full:
			return false, s
		case took:
			s.rows[i].status = string(models.CTATimedOut)
		}
	}
	return true, s
}

// linFeatureRuns makes histories of two runs: their phase moves, memory
// appends, completes and fails.
func linFeatureRuns() *linTable {
	finish := func(name string, to models.RunStatus, do func(e *env, id uuid.UUID) error) linCall {
		return linCall{name: name, weight: 1,
			model: onStatus(modelMove(string(to), string(models.RunRunning)), nil),
			do: func(e *env, h *linHistory, in linInput) linOutput {
				return linOutput{answer: answerOf(do(e, h.uids[in.row]))}
			}}
	}
	return &linTable{
		name: "FeatureRuns", rows: 2, start: string(models.RunRunning),
		create: func(e *env, h *linHistory, i int, phase string) error {
			_, err := e.repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{ID: h.uids[i], Phase: phase})
			return err
		},
		read: func(e *env, h *linHistory, i int) (linRow, error) {
			run, err := e.repo.GetFeatureRun(e.ctx, h.uids[i])
			if err != nil {
				return linRow{}, err
			}
			var memories []string
			if err := json.Unmarshal(run.Memories, &memories); err != nil {
				return linRow{}, fmt.Errorf("memories %s: %w", run.Memories, err)
			}
			return linRow{exists: true, status: string(run.Status), phase: run.Phase, memories: strings.Join(memories, ",")}, nil
		},
		writes: []linCall{
			{name: "phase", weight: 3, arg: oneOf("plan", "build", "test"),
				model: func(r linRow, phase string) (answer, linRow) { return onStatus(modelPhase(phase), nil)(r, phase) },
				do: func(e *env, h *linHistory, in linInput) linOutput {
					return linOutput{answer: answerOf(e.repo.UpdateFeatureRunPhase(e.ctx, h.uids[in.row], in.arg))}
				}},
			{name: "append", weight: 3,
				arg: func(rnd *rand.Rand, _, _ int) string {
					values := []string{"a", "b", "c", "d"}
					rnd.Shuffle(len(values), func(i, j int) { values[i], values[j] = values[j], values[i] })
					return strings.Join(values[:1+rnd.IntN(2)], ",")
				},
				model: modelAppend,
				do: func(e *env, h *linHistory, in linInput) linOutput {
					var values []any
					for _, v := range strings.Split(in.arg, ",") {
						values = append(values, v)
					}
					return linOutput{answer: answerOf(e.repo.UpdateFeatureRunMemories(e.ctx, h.uids[in.row], values))}
				}},
			finish("complete", models.RunCompleted, func(e *env, id uuid.UUID) error { return e.repo.CompleteFeatureRun(e.ctx, id) }),
			finish("fail", models.RunFailed, func(e *env, id uuid.UUID) error { return e.repo.FailFeatureRun(e.ctx, id) }),
		},
	}
}

// modelAppend models UpdateFeatureRunMemories with the values in arg: it
// appends those not there yet, in order, to a running run; on a finished
// run it answers nil if there are none, and refuses them otherwise.
func modelAppend(r linRow, arg string) (answer, linRow) {
	if !r.exists {
		return answerNotFound, r
	}
	var have []string
	if r.memories != "" {
		have = strings.Split(r.memories, ",")
	}
	n := len(have)
	for _, v := range strings.Split(arg, ",") {
		if !slices.Contains(have, v) {
			have = append(have, v)
		}
	}
	switch {
	case len(have) == n:
		return answerNil, r
	case r.status != string(models.RunRunning):
		return answer{kind: "invalid", from: r.status, to: string(models.RunRunning), detail: "new memories"}, r
	}
	r.memories = strings.Join(have, ",")
	return answerNil, r
}

// linSandboxes makes histories of two sandboxes of one run, moved between
// every status.
func linSandboxes() *linTable {
	var writes []linCall
	for _, to := range []models.SandboxStatus{models.SandboxCreating, models.SandboxRunning, models.SandboxPaused, models.SandboxStopped, models.SandboxFailed} {
		weight := 1
		if to == models.SandboxRunning || to == models.SandboxPaused {
			weight = 3
		}
		writes = append(writes, linCall{name: string(to), weight: weight,
			model: onStatus(modelMove(string(to), sandboxMoves[to]...), nil),
			do: func(e *env, h *linHistory, in linInput) linOutput {
				return linOutput{answer: answerOf(e.repo.UpdateSandboxStatus(e.ctx, h.ids[in.row], to))}
			}})
	}
	return &linTable{
		name: "Sandboxes", rows: 2, start: string(models.SandboxCreating),
		create: func(e *env, h *linHistory, i int, provider string) error {
			return e.repo.CreateSandboxRecord(e.ctx, repository.NewSandbox{ID: h.ids[i], FeatureRunID: h.run, Provider: provider})
		},
		read: func(e *env, h *linHistory, i int) (linRow, error) {
			s, err := e.repo.GetSandbox(e.ctx, h.ids[i])
			if err != nil {
				return linRow{}, err
			}
			return linRow{exists: true, status: string(s.Status), origin: s.Provider}, nil
		},
		writes: writes,
	}
}

// linPhaseResults makes histories of two phase results of one run, passed
// and failed.
func linPhaseResults() *linTable {
	return &linTable{
		name: "PhaseResults", rows: 2, start: string(models.PhaseRunning),
		create: func(e *env, h *linHistory, i int, phase string) error {
			_, err := e.repo.CreatePhaseResult(e.ctx, repository.NewPhaseResult{ID: h.uids[i], FeatureRunID: h.run, Phase: phase})
			return err
		},
		read: func(e *env, h *linHistory, i int) (linRow, error) {
			p, err := e.repo.GetPhaseResult(e.ctx, h.uids[i])
			if err != nil {
				return linRow{}, err
			}
			r := linRow{exists: true, status: string(p.Status), origin: p.Phase}
			if p.Output != nil {
				r.value = decodeString(p.Output)
			}
			return r, nil
		},
		writes: []linCall{
			{name: "pass", weight: 2, arg: unique,
				model: onStatus(modelMove(string(models.PhasePassed), string(models.PhaseRunning)), setValue),
				do: func(e *env, h *linHistory, in linInput) linOutput {
					return linOutput{answer: answerOf(e.repo.PassPhaseResult(e.ctx, h.uids[in.row], in.arg))}
				}},
			{name: "fail", weight: 1,
				model: onStatus(modelMove(string(models.PhaseFailed), string(models.PhaseRunning)), nil),
				do: func(e *env, h *linHistory, in linInput) linOutput {
					return linOutput{answer: answerOf(e.repo.FailPhaseResult(e.ctx, h.uids[in.row]))}
				}},
		},
	}
}

// linAgentInvocations makes histories of two invocations of one run,
// completed and failed, each with an output of its own.
func linAgentInvocations() *linTable {
	return &linTable{
		name: "AgentInvocations", rows: 2, start: string(models.InvocationRunning),
		create: func(e *env, h *linHistory, i int, agent string) error {
			_, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{ID: h.uids[i], FeatureRunID: h.run, Agent: agent})
			return err
		},
		read: func(e *env, h *linHistory, i int) (linRow, error) {
			inv, err := e.repo.GetAgentInvocation(e.ctx, h.uids[i])
			if err != nil {
				return linRow{}, err
			}
			r := linRow{exists: true, status: string(inv.Status), origin: inv.Agent}
			if inv.Output != nil {
				r.value = decodeString(inv.Output)
			}
			return r, nil
		},
		writes: []linCall{
			{name: "complete", weight: 2, arg: unique,
				model: onStatus(modelMove(string(models.InvocationCompleted), string(models.InvocationRunning)), setValue),
				do: func(e *env, h *linHistory, in linInput) linOutput {
					return linOutput{answer: answerOf(e.repo.CompleteAgentInvocation(e.ctx, h.uids[in.row], repository.InvocationResult{Output: in.arg}))}
				}},
			{name: "fail", weight: 1, arg: unique,
				model: onStatus(modelMove(string(models.InvocationFailed), string(models.InvocationRunning)), setValue),
				do: func(e *env, h *linHistory, in linInput) linOutput {
					return linOutput{answer: answerOf(e.repo.FailAgentInvocation(e.ctx, h.uids[in.row], repository.InvocationResult{Output: in.arg}, "failed"))}
				}},
		},
	}
}
