package latewrites

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Counts counts the trials of a Combo.
type Counts struct {
	Trials, Checked, Blocked, Nils, Errs, OtherErrs, Stuck int
	// Late are calls that returned an error whose write committed; Lost
	// are trials whose row does not hold the later write at the end;
	// Unstored are calls that returned nil whose write never committed;
	// LaterErrs are later writes that failed, where a Tally counts them.
	Late, Lost, Unstored, LaterErrs int
	MaxLag                          time.Duration
}

// Add adds o to c.
func (c *Counts) Add(o *Counts) {
	c.Trials += o.Trials
	c.Checked += o.Checked
	c.Blocked += o.Blocked
	c.Nils += o.Nils
	c.Errs += o.Errs
	c.OtherErrs += o.OtherErrs
	c.Stuck += o.Stuck
	c.Late += o.Late
	c.Lost += o.Lost
	c.Unstored += o.Unstored
	c.LaterErrs += o.LaterErrs
	c.MaxLag = max(c.MaxLag, o.MaxLag)
}

// Tally counts trials by Combo, and renders and checks the counts.
type Tally struct {
	// LaterErrs is whether later writes that failed are counted, in a
	// column of their own and a failure of Check, rather than each
	// failing the test as it is counted.
	LaterErrs bool
	// Explain is whether the failures of (a) and (b) say what they mean.
	Explain bool
	// BlockedLegend is what the legend says of the column blocked.
	BlockedLegend string

	order  []Combo
	counts map[Combo]*Counts
	// odd and laterOdd are the first five calls' errors that do not match
	// their context's, and later writes' errors.
	odd, laterOdd []string
}

// NewTally returns a Tally of the combos in order, each counted 0.
func NewTally(order []Combo) *Tally {
	ty := &Tally{order: order, counts: map[Combo]*Counts{}}
	for _, k := range order {
		ty.counts[k] = &Counts{}
	}
	return ty
}

// CountGroups reads, once a group runs on another site's Holder than the
// one before, its write log, and counts each trial of the groups, its row
// read on its site's Plain.
func (ty *Tally) CountGroups(t *testing.T, groups []Group) {
	t.Helper()
	var log map[string]bool
	for g, group := range groups {
		s := group.Site
		if g == 0 || s.Holder != groups[g-1].Site.Holder {
			log = ReadWriteLog(t, s.Holder)
		}
		for _, tr := range group.Trials {
			ty.Count(t, tr, log, s)
		}
	}
}

// Count counts tr, given the marks of the writes committed on its site s.
// It fails the test if the row cannot be read, and, unless ty counts them,
// if the later write failed.
func (ty *Tally) Count(t *testing.T, tr *Trial, log map[string]bool, s *Site) {
	t.Helper()
	c := ty.counts[tr.Combo()]
	c.Trials++
	c.MaxLag = max(c.MaxLag, tr.Lag)
	if tr.Checked {
		c.Checked++
	}
	if tr.Blocked {
		c.Blocked++
	}
	if tr.Stuck {
		c.Stuck++
	}
	committed := log[tr.Write.BlockedMark(tr.F, tr.Key)]
	want := context.Canceled
	if tr.Reason == "deadline" {
		want = context.DeadlineExceeded
	}
	switch {
	case tr.Err == nil:
		c.Nils++
		if !committed {
			c.Unstored++
		}
	case !errors.Is(tr.Err, want):
		c.OtherErrs++
		if len(ty.odd) < 5 {
			ty.odd = append(ty.odd, fmt.Sprintf("%s: %v", tr.Key, tr.Err))
		}
		fallthrough
	default:
		c.Errs++
		if committed {
			c.Late++
		}
	}
	if tr.Later != nil {
		if ty.LaterErrs {
			c.LaterErrs++
			if len(ty.laterOdd) < 5 {
				ty.laterOdd = append(ty.laterOdd, fmt.Sprintf("%s: %v", tr.Key, tr.Later))
			}
		} else {
			t.Errorf("%s: the later write: %v", tr.Key, tr.Later)
		}
	}
	final, err := tr.Write.Final(t.Context(), s.Plain, tr.F, tr.Key)
	if err != nil {
		t.Errorf("%s: read the row: %v", tr.Key, err)
	} else if final != tr.Expected() {
		c.Lost++
	}
}

// Table writes to b the counts by reason and delay, then by write too, and
// their total; then the legend, with stuck the sites' Stuck, and the
// errors that do not match the context's. It returns the total.
func (ty *Tally) Table(b *strings.Builder, stuck time.Duration) *Counts {
	head := "%-22s %-8s %5s | %6s %7s %4s %4s %5s %5s %7s | %8s %8s %8s"
	line := "%-22s %-8s %5s | %6d %7s %4d %4d %5d %5d %7s | %8d %8d %8d"
	heads := []any{"write", "reason", "delay", "trials", "blocked", "nil", "err", "other", "stuck", "max lag", "(a) late", "(b) lost", "unstored"}
	if ty.LaterErrs {
		head += " %9s"
		line += " %9d"
		heads = append(heads, "later err")
	}
	fmt.Fprintf(b, head+"\n", heads...)
	row := func(write, reason, delay string, c *Counts) {
		blocked := fmt.Sprint(c.Blocked)
		if c.Checked == 0 {
			blocked = "-"
		}
		args := []any{write, reason, delay, c.Trials, blocked, c.Nils, c.Errs, c.OtherErrs, c.Stuck,
			c.MaxLag.Round(time.Millisecond), c.Late, c.Lost, c.Unstored}
		if ty.LaterErrs {
			args = append(args, c.LaterErrs)
		}
		fmt.Fprintf(b, line+"\n", args...)
	}
	total := &Counts{}
	for _, reason := range Reasons {
		for _, delay := range Delays {
			sum := &Counts{}
			for _, k := range ty.order {
				if k.Reason == reason && k.Delay == delay {
					sum.Add(ty.counts[k])
				}
			}
			total.Add(sum)
			row("(every write)", reason, delay.String(), sum)
		}
	}
	for _, k := range ty.order {
		row(k.Write, k.Reason, k.Delay.String(), ty.counts[k])
	}
	row("(total)", "", "", total)
	unstored := "unstored: returned nil, and its write never committed"
	if ty.LaterErrs {
		unstored += "; later err: the later write failed"
	}
	fmt.Fprintf(b, `blocked: %s
nil, err: what the call returned; other: errors that do not match the context's (context.Canceled, context.DeadlineExceeded)
stuck: returned only once the lock was freed anyway, %v after the context ended; max lag: from the context's end to the return
(a) late: returned an error, and its write committed; (b) lost: the row does not hold the later write at the end
%s
`, ty.BlockedLegend, stuck, unstored)
	if len(ty.odd) > 0 {
		fmt.Fprintf(b, "errors that do not match the context's (other): %s\n", strings.Join(ty.odd, "; "))
	}
	if len(ty.laterOdd) > 0 {
		fmt.Fprintf(b, "later writes that failed: %s\n", strings.Join(ty.laterOdd, "; "))
	}
	return total
}

// Check fails the test if any of (a), (b), unstored or, where ty counts
// them, the later writes' errors is not 0 in total.
func (ty *Tally) Check(t *testing.T, total *Counts) {
	t.Helper()
	lateWhy, lostWhy := "", ""
	if ty.Explain {
		lateWhy = ": their statement was not stopped on the server"
		lostWhy = ": a write whose call had returned an error landed after it, or before it and kept it from applying"
	}
	if total.Late > 0 {
		t.Errorf("%d of %d calls that returned an error had their write committed afterwards, once the lock was freed%s ((a) late above)", total.Late, total.Errs, lateWhy)
	}
	if total.Lost > 0 {
		t.Errorf("in %d of %d trials the row does not hold the later write, made once the lock was freed%s ((b) lost above)", total.Lost, total.Trials, lostWhy)
	}
	if total.Unstored > 0 {
		t.Errorf("%d of %d calls that returned nil never had their write committed (unstored above)", total.Unstored, total.Nils)
	}
	if ty.LaterErrs && total.LaterErrs > 0 {
		t.Errorf("%d of %d later writes failed (later err above)", total.LaterErrs, total.Trials)
	}
}
