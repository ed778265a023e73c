package persistencetest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"unicode/utf8"
)

// Difference is a row that differs between two snapshots: in both with
// other values, or in one only.
type Difference struct {
	// Table is the row's table, such as "feature_runs".
	Table string
	// Key is the row's primary key, as the snapshots show it.
	Key string
	// Columns names the table's columns. Want and Got hold the row's
	// values in the same order, as the snapshots show them, or are nil
	// where the row is missing.
	Columns   []string
	Want, Got []string
	// key is the index of the primary key in Columns.
	key int
}

// Differences are the rows that differ between two snapshots, tables
// parents first and rows by key.
type Differences []Difference

// Diff returns the rows that differ between want and got; none when they
// are equal.
func Diff(want, got Snapshot) Differences {
	var out Differences
	order := slices.Clone(want.order)
	for _, name := range got.order {
		if !slices.Contains(order, name) {
			order = append(order, name)
		}
	}
	for _, name := range order {
		w, g := want.tables[name], got.tables[name]
		columns, key := w.columns, w.key
		if columns == nil {
			columns, key = g.columns, g.key
		}
		keys := slices.Sorted(maps.Keys(w.rows))
		for k := range g.rows {
			if _, ok := w.rows[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			wr, gr := w.rows[k], g.rows[k]
			if wr != nil && gr != nil && slices.Equal(wr, gr) {
				continue
			}
			out = append(out, Difference{Table: name, Key: k, Columns: columns, Want: wr, Got: gr, key: key})
		}
	}
	return out
}

// String describes the first differences side by side, under the headings
// want and got.
func (d Differences) String() string { return d.Describe("want", "got", 3) }

// Describe describes the first limit differing rows side by side, under
// the headings wantName and gotName, and says how many more there are. A
// row of a table that is only in want is shown beside one only in got, the
// most alike: a row written again under another key shows as such.
func (d Differences) Describe(wantName, gotName string, limit int) string {
	var b strings.Builder
	shown := 0
	// seen holds the rows shown whole, to show a row equal to one of them
	// but for its key in a line.
	var seen []*Difference
	for i, p := range pairUp(d) {
		if i == limit {
			fmt.Fprintf(&b, "… and %s\n", plural(len(d)-shown, "more differing row"))
			break
		}
		shown += p.rows()
		if p.want == nil || p.got == nil {
			x := p.want
			if x == nil {
				x = p.got
			}
			if like := likeButKey(seen, x); like != nil {
				name := wantName
				if x.Want == nil {
					name = gotName
				}
				fmt.Fprintf(&b, "%s %s: only in %s, like %s but for its key\n", x.Table, x.Key, name, like.Key)
				continue
			}
			seen = append(seen, x)
		}
		p.describe(&b, wantName, gotName)
	}
	return b.String()
}

// pair is what Describe shows at once: a row in both snapshots, or a row
// in one only, with, when the table has one, a row only in the other.
type pair struct {
	want, got *Difference
}

func (p pair) rows() int {
	if p.want != nil && p.got != nil && p.want != p.got {
		return 2
	}
	return 1
}

// pairUp pairs each row that is only in want with the row only in got, of
// the same table, that has the most equal columns.
func pairUp(d Differences) []pair {
	var out []pair
	used := map[int]bool{}
	for i := range d {
		x := &d[i]
		switch {
		case x.Want != nil && x.Got != nil:
			out = append(out, pair{x, x})
		case x.Want != nil:
			best, bestEqual := -1, -1
			for j := range d {
				y := &d[j]
				if used[j] || y.Want != nil || y.Table != x.Table {
					continue
				}
				if n := equalColumns(x.Want, y.Got); n > bestEqual {
					best, bestEqual = j, n
				}
			}
			p := pair{want: x}
			if best >= 0 {
				used[best] = true
				p.got = &d[best]
			}
			out = append(out, p)
		}
	}
	for j := range d {
		if d[j].Want == nil && !used[j] {
			out = append(out, pair{got: &d[j]})
		}
	}
	return out
}

// likeButKey returns the row of rows that x equals but for its key, if
// any.
func likeButKey(rows []*Difference, x *Difference) *Difference {
	xv := x.Want
	if xv == nil {
		xv = x.Got
	}
	for _, r := range rows {
		rv := r.Want
		if rv == nil {
			rv = r.Got
		}
		if r.Table == x.Table && len(rv) == len(xv) && equalColumns(rv, xv) == len(xv)-1 && rv[x.key] != xv[x.key] {
			return r
		}
	}
	return nil
}

func equalColumns(a, b []string) int {
	n := 0
	for i := range a {
		if a[i] == b[i] {
			n++
		}
	}
	return n
}

// maxWidth is the widest a value is shown, in characters.
const maxWidth = 64

func (p pair) describe(b *strings.Builder, wantName, gotName string) {
	var columns, want, got []string
	keyOnly := false
	switch {
	case p.want == p.got:
		fmt.Fprintf(b, "%s %s: differs\n", p.want.Table, p.want.Key)
		columns, want, got = p.want.Columns, p.want.Want, p.got.Got
	case p.got == nil:
		fmt.Fprintf(b, "%s %s: only in %s\n", p.want.Table, p.want.Key, wantName)
		columns, want = p.want.Columns, p.want.Want
		got = slices.Repeat([]string{"(no row)"}, len(want))
	case p.want == nil:
		fmt.Fprintf(b, "%s %s: only in %s\n", p.got.Table, p.got.Key, gotName)
		columns, got = p.got.Columns, p.got.Got
		want = slices.Repeat([]string{"(no row)"}, len(got))
	default:
		fmt.Fprintf(b, "%s %s: only in %s, beside %s: only in %s\n", p.want.Table, p.want.Key, wantName, p.got.Key, gotName)
		columns, want, got = p.want.Columns, p.want.Want, p.got.Got
		keyOnly = true
	}
	w := tabwriter.NewWriter(b, 0, 0, 3, ' ', 0)
	fmt.Fprintf(w, "    column\t%s\t%s\n", wantName, gotName)
	for i, col := range columns {
		// A row on one side only is shown whole; otherwise only the
		// columns that differ.
		if want[i] == got[i] {
			continue
		}
		if keyOnly && i != p.want.key {
			keyOnly = false
		}
		wv, gv := clip(want[i], got[i])
		fmt.Fprintf(w, "    %s\t%s\t%s\n", col, wv, gv)
	}
	_ = w.Flush()
	if keyOnly {
		fmt.Fprintf(b, "    every other column is equal: the same row under another key, as when an ID comes from uuid.New() or the clock rather than repository.StableID\n")
	}
}

// clip shortens a and b to maxWidth characters each, from a little before
// the first character where they differ, so that the difference shows.
func clip(a, b string) (string, string) {
	if utf8.RuneCountInString(a) <= maxWidth && utf8.RuneCountInString(b) <= maxWidth {
		return a, b
	}
	ra, rb := []rune(a), []rune(b)
	first := 0
	for first < len(ra) && first < len(rb) && ra[first] == rb[first] {
		first++
	}
	// Start a little before the first difference, unless it shows anyway.
	start := 0
	if first > maxWidth*3/4 {
		start = first - maxWidth/4
	}
	cut := func(r []rune) string {
		from := min(start, max(0, len(r)-maxWidth))
		s := string(r[from:min(len(r), from+maxWidth)])
		if from > 0 {
			s = "…" + s
		}
		if from+maxWidth < len(r) {
			s += "…"
		}
		return s
	}
	return cut(ra), cut(rb)
}
