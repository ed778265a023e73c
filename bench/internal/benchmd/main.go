// Command benchmd turns the CSV that benchstat prints for the benchmarks of
// package bench, with the impl key as columns (the baseline first, as the
// base, then repository and, on PostgreSQL, naive), into the Markdown
// tables of BENCHMARKS.md.
//
// Usage:
//
//	benchstat -format csv -col '/impl@(pgx repository naive)' bench.txt | benchmd
//	benchstat -format csv -col '/impl@(mysql repository)' bench-mariadb.txt | benchmd -base mysql -db MariaDB
//	benchstat -format csv -col '/impl@(repository fenced)' bench.txt bench-mariadb.txt | benchmd -fenced
//
// With -base other than pgx it prints the tables of the writes and the
// workload on the database -db names, which has no naive side. With
// -fenced it prints the section that compares the fenced writes (the
// repository through AtStep, impl=fenced) with the same writes unfenced
// (impl=repository, the base), on every database of its input.
package main

import (
	"bufio"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// target is the largest repository/pgx time ratio the issue accepts.
const target = 1.10

// cell is one side's summary of one benchmark in one unit.
type cell struct {
	median float64
	ci     string // benchstat's confidence interval, such as "±3%"
}

// row is one benchmark in one unit: each side, and benchstat's comparison
// of the second side (repo) with the first (base): the repository with the
// baseline, pgx or mysql, or with -fenced the fenced repository with the
// unfenced one. naive is zero where that side has no samples, as in
// BenchmarkAppendScaling and on databases other than PostgreSQL; repo is
// zero where a benchmark has only the base, as every write but the
// fenced ones with -fenced.
type row struct {
	base, repo, naive cell
	delta             string // benchstat's "vs base" and P columns
}

// results maps a unit, such as "sec/op", then a benchmark name without its
// impl key and GOMAXPROCS suffix, to its row.
type results map[string]map[string]row

// columns are the impls of benchstat's columns: the base, the side
// compared with it and, on PostgreSQL, naive. Where sideOptional is set,
// the input may have no side at all: benchstat then prints the base's
// column alone.
type columns struct {
	base, side, naive string
	sideOptional      bool
}

func main() {
	base := flag.String("base", "pgx", "the baseline's impl, the first column")
	db := flag.String("db", "", "the database, named in the headings, when the baseline is not pgx")
	fenced := flag.Bool("fenced", false, "print the fenced writes against the unfenced, from columns repository and fenced")
	flag.Parse()
	cols := columns{base: *base, side: "repository"}
	switch {
	case *fenced:
		// Results of before the fenced side have none.
		cols = columns{base: "repository", side: "fenced", sideOptional: true}
	case *base == "pgx":
		cols.naive = "naive"
	}
	// The fenced section names the database of each benchmark, which the
	// others, of one database each, leave out.
	res, order, err := parse(os.Stdin, cols, *fenced)
	if err == nil {
		p := &printer{w: os.Stdout, res: res, base: *base}
		switch {
		case *fenced:
			err = p.fenced(order)
		case *base == "pgx":
			err = p.postgres(order)
		default:
			err = p.other(order, *db)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchmd:", err)
		os.Exit(1)
	}
}

// procsSuffix is the GOMAXPROCS suffix of a benchmark's name, and dbKey
// its database key, which a table of one database need not repeat.
var (
	procsSuffix = regexp.MustCompile(`-\d+$`)
	dbKey       = regexp.MustCompile(`/db=[^/]+`)
)

// parse reads benchstat's CSV: blocks, one per unit, each with a header of
// the column values, a header of units, and a row per benchmark. It returns
// the benchmark names in the order benchstat printed them, with their db
// key if keepDB is set.
func parse(r io.Reader, cols columns, keepDB bool) (results, []string, error) {
	res := make(results)
	var order []string
	var unit string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, ",") {
			continue // blank lines and configuration such as "cpu: ..."
		}
		fields, err := csv.NewReader(strings.NewReader(line)).Read()
		if err != nil {
			return nil, nil, fmt.Errorf("%q: %w", line, err)
		}
		switch {
		case fields[0] == "" && len(fields) > 1 && fields[1] == cols.base:
			if cols.sideOptional && len(fields) < 4 {
				continue
			}
			if len(fields) < 4 || fields[3] != cols.side || (cols.naive != "" && (len(fields) < 8 || fields[7] != cols.naive)) {
				return nil, nil, fmt.Errorf("want columns %s, %s then %q, got %q", cols.base, cols.side, cols.naive, line)
			}
		case fields[0] == "":
			unit = fields[1]
			if res[unit] == nil {
				res[unit] = make(map[string]row)
			}
		case fields[0] == "geomean" || unit == "":
		default:
			// benchstat ends a row after the last side with samples of
			// the benchmark: after the repository's columns when naive
			// has none, as for the scaling benchmarks.
			for len(fields) < 9 {
				fields = append(fields, "")
			}
			name := procsSuffix.ReplaceAllString(fields[0], "")
			if !keepDB {
				name = dbKey.ReplaceAllString(name, "")
			}
			base, err1 := parseCell(fields[1], fields[2])
			repo, err2 := parseCell(fields[3], fields[4])
			naive, err3 := parseCell(fields[7], fields[8])
			if err := errors.Join(err1, err2, err3); err != nil {
				return nil, nil, fmt.Errorf("%q: %w", line, err)
			}
			if !slices.Contains(order, name) {
				order = append(order, name)
			}
			res[unit][name] = row{base: base, repo: repo, naive: naive, delta: strings.TrimSpace(fields[5] + " " + fields[6])}
		}
	}
	return res, order, sc.Err()
}

func parseCell(median, ci string) (cell, error) {
	if median == "" {
		return cell{}, nil // one side has no samples of this benchmark
	}
	v, err := strconv.ParseFloat(median, 64)
	return cell{median: v, ci: ci}, err
}

// group returns the benchmarks of order whose names start with prefix
// and that have times.
func (p *printer) group(order []string, prefix string) []string {
	var names []string
	for _, n := range order {
		if strings.HasPrefix(n, prefix) {
			if _, ok := p.res["sec/op"][n]; ok {
				names = append(names, n)
			}
		}
	}
	return names
}

// postgres prints the tables of the PostgreSQL benchmarks.
func (p *printer) postgres(order []string) error {
	times := p.res["sec/op"]
	if len(times) == 0 {
		return errors.New("no sec/op results")
	}
	group := func(prefix string) []string { return p.group(order, prefix) }

	p.f("## Writes, happy path\n\n")
	p.f("Each op inserts a row or moves one to a new state: one statement.\n\n")
	p.writes(group("Write/"), "Write/")
	p.f("\n## Writes, replay path\n\n")
	p.f("Each op finds the row as asked: a create with an existing ID is one INSERT that conflicts; a transition to the state the row is in, or an append of values already present, is the guarded statement that changes no row and reports why in the same round trip.\n\n")
	p.writes(group("Replay/"), "Replay/")

	p.f("\n## Whole workload\n\n")
	p.f("One op is one simulated feature run of 80 steps (1 run, 5 phases, 20 invocations, 2 sandboxes, 3 CTA events, 50 memories).\n\n")
	p.f("| workers | pgx time/run | repository time/run | ratio | naive time/run | ratio vs naive | pgx runs/s | repository runs/s | client CPU/run pgx | client CPU/run repository | CPU ratio | allocs/run pgx | allocs/run repository | B/run pgx | B/run repository |\n")
	p.f("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, n := range group("Workload/") {
		t, cpu := times[n], p.res["cpu-sec/op"][n]
		p.f("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			strings.TrimPrefix(n, "Workload/workers="), duration(t.base), duration(t.repo), ratio(t.repo, t.base),
			duration(t.naive), ratio(t.repo, t.naive),
			p.plain("runs/s", n, true), p.plain("runs/s", n, false),
			duration(cpu.base), duration(cpu.repo), ratio(cpu.repo, cpu.base),
			p.plain("allocs/op", n, true), p.plain("allocs/op", n, false),
			p.plain("B/op", n, true), p.plain("B/op", n, false))
	}

	p.f("\n## Memory append scaling\n\n")
	p.f("An append of two new values to a run already holding the stated number of memories; *10000-replay* appends two values already among 10,000, which a replay must find without writing. *vs 10* is each side's time relative to its time with 10 stored. *sent* and *received* are the bytes on the wire per append.\n\n")
	p.f("| stored | pgx | repository | ratio | pgx vs 10 | repository vs 10 | sent B/op pgx | sent B/op repository | received B/op pgx | received B/op repository |\n")
	p.f("|---|---|---|---|---|---|---|---|---|---|\n")
	names := group("AppendScaling/")
	for _, n := range names {
		t, first := times[n], times[names[0]]
		p.f("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			strings.TrimPrefix(n, "AppendScaling/stored="), duration(t.base), duration(t.repo), ratio(t.repo, t.base),
			growth(t.base, first.base), growth(t.repo, first.repo),
			p.plain("sent-B/op", n, true), p.plain("sent-B/op", n, false),
			p.plain("recv-B/op", n, true), p.plain("recv-B/op", n, false))
	}

	p.f("\n## Memory append scaling on SQLite\n\n")
	p.f("An append of one new value to a run already holding the stated number of memories, on an SQLite file database in WAL mode (the README's DSN), by the repository alone. *vs 10* is the time relative to 10 stored; linear growth shows as a ratio near the ratio of stored counts, far below its square.\n\n")
	p.f("| stored | repository | vs 10 |\n")
	p.f("|---|---|---|\n")
	names = group("SQLiteAppendScaling/")
	for _, n := range names {
		t, first := times[n], times[names[0]]
		p.f("| %s | %s | %s |\n", strings.TrimPrefix(n, "SQLiteAppendScaling/stored="), duration(t.repo), growth(t.repo, first.repo))
	}
	return p.err
}

// other prints the tables of the writes and the workload on db, which
// has no naive side.
func (p *printer) other(order []string, db string) error {
	if len(p.res["sec/op"]) == 0 {
		return errors.New("no sec/op results")
	}
	p.f("## %s: writes, happy path\n\n", db)
	p.f("Each op inserts a row or moves one to a new state: one statement.\n\n")
	p.writes(p.group(order, "Write/"), "Write/")
	p.f("\n## %s: writes, replay path\n\n", db)
	p.f("Each op finds the row as asked: a create with an existing ID is one INSERT that changes nothing; a transition to the state the row is in, or an append of values already present, is the guarded UPDATE that changes no row, then the SELECT … LOCK IN SHARE MODE that reads why.\n\n")
	p.writes(p.group(order, "Replay/"), "Replay/")
	p.f("\n## %s: whole workload\n\n", db)
	p.f("One op is one simulated feature run of 80 steps, as on PostgreSQL.\n\n")
	p.f("| workers | %[1]s time/run | repository time/run | ratio | %[1]s runs/s | repository runs/s | client CPU/run %[1]s | client CPU/run repository | CPU ratio | allocs/run %[1]s | allocs/run repository |\n", p.base)
	p.f("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, n := range p.group(order, "Workload/") {
		t, cpu := p.res["sec/op"][n], p.res["cpu-sec/op"][n]
		p.f("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			strings.TrimPrefix(n, "Workload/workers="), duration(t.base), duration(t.repo), ratio(t.repo, t.base),
			p.plain("runs/s", n, true), p.plain("runs/s", n, false),
			duration(cpu.base), duration(cpu.repo), ratio(cpu.repo, cpu.base),
			p.plain("allocs/op", n, true), p.plain("allocs/op", n, false))
	}
	return p.err
}

// fenced prints the section that compares each write made through
// Repository.AtStep, fenced, with the same write unfenced, on each
// database of the results: the benchmarks that have both sides.
func (p *printer) fenced(order []string) error {
	times := p.res["sec/op"]
	if len(times) == 0 {
		return errors.New("no sec/op results")
	}
	p.f("## Fenced against unfenced\n\n")
	p.f("The two moves that `Repository.AtStep` fences, made through it (*fenced*) and without it (*unfenced*: the repository's side above), by the repository on the same database in the same run, one side right after the other. ")
	p.f("The fenced form is one statement still: the guarded update, also guarded by the step the row records, which it sets. ")
	p.f("On the happy path each op moves a row that records no step yet; on the replay path each op finds the row as asked at its own step, which a first, untimed call recorded, and changes nothing (on MariaDB, the UPDATE then the probe, as above). ")
	p.f("*ratio* is fenced / unfenced of the medians, and *benchstat* benchstat's comparison of fenced with unfenced: `~` when the difference is not significant at p < 0.05.\n\n")
	var names []string
	for _, n := range order {
		if t, ok := times[n]; ok && t.base.median > 0 && t.repo.median > 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		p.f("No fenced write was measured.\n")
		return p.err
	}
	p.f("| database | path | operation | unfenced | fenced | ratio | ≤ %.2fx | benchstat (fenced vs unfenced) | client CPU unfenced | client CPU fenced | CPU ratio | allocs/op unfenced | allocs/op fenced | B/op unfenced | B/op fenced | sent B/op unfenced / fenced |\n", target)
	p.f("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, n := range names {
		t, cpu := times[n], p.res["cpu-sec/op"][n]
		db, path, op := split(n)
		ok := "no"
		if t.repo.median/t.base.median <= target {
			ok = "yes"
		}
		p.f("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |\n",
			db, path, op, duration(t.base), duration(t.repo), ratio(t.repo, t.base), ok, t.delta,
			duration(cpu.base), duration(cpu.repo), ratio(cpu.repo, cpu.base),
			p.plain("allocs/op", n, true), p.plain("allocs/op", n, false),
			p.plain("B/op", n, true), p.plain("B/op", n, false),
			p.plain("sent-B/op", n, true), p.plain("sent-B/op", n, false))
	}
	return p.err
}

// databaseNames are the names of the databases by their db key;
// PostgreSQL's benchmarks have none.
var databaseNames = map[string]string{"": "PostgreSQL", "mariadb": "MariaDB"}

// split returns the database, the path (happy or replay) and the
// operation of the write benchmark name, such as
// Replay/UpdateSandboxStatus/db=mariadb.
func split(name string) (db, path, op string) {
	parts := strings.Split(name, "/")
	path, op = parts[0], parts[min(1, len(parts)-1)]
	switch path {
	case "Write":
		path = "happy"
	case "Replay":
		path = "replay"
	}
	key := ""
	for _, part := range parts[1:] {
		if v, found := strings.CutPrefix(part, "db="); found {
			key = v
		}
	}
	db, known := databaseNames[key]
	if !known {
		db = key
	}
	return db, path, op
}

type printer struct {
	w   io.Writer
	res results
	// base is the baseline's impl.
	base string
	err  error
}

func (p *printer) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

// writes prints the table of the write benchmarks names, with the naive
// side's columns where the baseline is pgx.
func (p *printer) writes(names []string, prefix string) {
	naive := p.base == "pgx"
	b := p.base
	p.f("| operation | %s | repository | ratio | ≤ %.2fx | benchstat (repository vs %s) |", b, target, b)
	if naive {
		p.f(" naive | ratio vs naive |")
	}
	p.f(" client CPU %[1]s | client CPU repository | CPU ratio | allocs/op %[1]s | allocs/op repository | B/op %[1]s | B/op repository | sent B/op %[1]s / repository |\n", b)
	p.f("|---|---|---|---|---|---|")
	if naive {
		p.f("---|---|")
	}
	p.f("---|---|---|---|---|---|---|---|\n")
	for _, n := range names {
		t, cpu := p.res["sec/op"][n], p.res["cpu-sec/op"][n]
		ok := "no"
		if t.base.median > 0 && t.repo.median/t.base.median <= target {
			ok = "yes"
		}
		p.f("| %s | %s | %s | %s | %s | %s |", strings.TrimPrefix(n, prefix), duration(t.base), duration(t.repo), ratio(t.repo, t.base), ok, t.delta)
		if naive {
			p.f(" %s | %s |", duration(t.naive), ratio(t.repo, t.naive))
		}
		p.f(" %s | %s | %s | %s | %s | %s | %s | %s / %s |\n",
			duration(cpu.base), duration(cpu.repo), ratio(cpu.repo, cpu.base),
			p.plain("allocs/op", n, true), p.plain("allocs/op", n, false),
			p.plain("B/op", n, true), p.plain("B/op", n, false),
			p.plain("sent-B/op", n, true), p.plain("sent-B/op", n, false))
	}
}

// ratio is the median of c over that of base.
func ratio(c, base cell) string {
	if c.median == 0 || base.median == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", c.median/base.median)
}

// plain is the median of one side of benchmark name in unit, the base or
// the side compared with it, without its spread, rounded to a whole number
// except below 100.
func (p *printer) plain(unit, name string, base bool) string {
	r, ok := p.res[unit][name]
	if !ok {
		return "n/a"
	}
	c := r.repo
	if base {
		c = r.base
	}
	if c.median < 100 {
		return strconv.FormatFloat(c.median, 'f', 1, 64)
	}
	return strconv.FormatFloat(c.median, 'f', 0, 64)
}

// growth is c relative to base.
func growth(c, base cell) string {
	if c.median == 0 || base.median == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1fx", c.median/base.median)
}

// duration formats a time median with its spread, in µs or ms.
func duration(c cell) string {
	if c.median == 0 {
		return "n/a"
	}
	d := fmt.Sprintf("%.1f µs", c.median*1e6)
	if c.median >= 1e-3 {
		d = fmt.Sprintf("%.2f ms", c.median*1e3)
	}
	if c.ci != "" {
		d += " " + c.ci
	}
	return d
}
