#!/usr/bin/env bash
# Runs the benchmarks of package bench (the repository against hand-written
# pgx and against a naive GORM port, on the same PostgreSQL; against
# hand-written go-sql-driver/mysql on the same MariaDB; and its fenced
# moves against the same moves unfenced, on both) and writes BENCHMARKS.md
# from their results.
#
# Usage: scripts/bench.sh
#
# Environment:
#   TEST_POSTGRES_DSN         the PostgreSQL server (default: the one
#                             internal/dbtest uses)
#   TEST_MARIADB_DSN          the MariaDB server (default: internal/dbtest's)
#   COUNT                     samples per benchmark (default 10, at least 6)
#   BENCH_DATABASES           the databases to benchmark, of "postgres
#                             mariadb" (the default); the results of the
#                             others are kept from the last run, and
#                             BENCHMARKS.md says when that was
#   BENCH_SYNCHRONOUS_COMMIT  synchronous_commit of the PostgreSQL benchmark
#                             database (default off; see bench/doc.go)
#   BENCH_RENDER_SECONDS      if set, run nothing (BENCH_DATABASES empty):
#                             write BENCHMARKS.md from the raw results
#                             already in bench/testdata
#
# The raw `go test` output is kept in bench/testdata, bench.txt for
# PostgreSQL and bench-mariadb.txt for MariaDB, for comparing another run
# with benchstat; runs.txt records, per database, when its results were
# taken, in how many seconds, samples and at which commit.
set -euo pipefail
cd "$(dirname "$0")/.."

# benchstat from the Go module proxy, pinned; not a dependency of the module.
BENCHSTAT_VERSION=v0.0.0-20260908200009-22c9c6c9d4da
benchstat() { go run "golang.org/x/perf/cmd/benchstat@${BENCHSTAT_VERSION}" "$@"; }

COUNT=${COUNT:-10}
if ((COUNT < 6)); then
	echo "COUNT must be at least 6: benchstat needs 6 samples for a confidence interval" >&2
	exit 2
fi
dsn=${TEST_POSTGRES_DSN:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
mkdir -p bench/testdata
runs=bench/testdata/runs.txt
touch "$runs"
read -r -a dbs <<<"${BENCH_DATABASES-postgres mariadb}"
if [ -n "${BENCH_RENDER_SECONDS:-}" ]; then
	dbs=()
fi
declare -A raw=([postgres]=bench/testdata/bench.txt [mariadb]=bench/testdata/bench-mariadb.txt) seconds=()
# The interleaved benchmarks (bench/interleaved_test.go), kept apart:
# their results have no impl key, by which the tables are drawn.
declare -A interleavedraw=([postgres]=bench/testdata/bench-interleaved.txt [mariadb]=bench/testdata/bench-interleaved-mariadb.txt)
for db in "${dbs[@]}"; do
	[ -n "${raw[$db]:-}" ] || { echo "unknown database $db in BENCH_DATABASES" >&2; exit 2; }
	: >"${raw[$db]}"
	: >"${interleavedraw[$db]}"
	seconds[$db]=0
done

# Each group gets the iteration count that keeps its samples near half a
# second: writes take a few hundred µs on PostgreSQL, an append to 10,000
# memories and a whole feature run tens of ms; on MariaDB, whose writes
# wait for InnoDB's log flush, a write takes about 1 ms and a feature run
# about 100 ms. A database's benchmarks are those whose names carry its db
# key, PostgreSQL's those without one (its names predate the key).
# The naive side runs in processes of its own (see bench/doc.go).
declare -A groups=(
	[postgres]="^Benchmark(Write|Replay)$/./^impl=(repository|fenced|pgx)$ 1500x
^Benchmark(Write|Replay)$/./^impl=naive$ 1500x
^BenchmarkAppendScaling$ 150x
^BenchmarkSQLiteAppendScaling$ 30x
^BenchmarkWorkload$/./^impl=(repository|pgx)$ 40x
^BenchmarkWorkload$/./^impl=naive$ 40x"
	[mariadb]="^Benchmark(Write|Replay)$/./^db=mariadb$ 500x
^BenchmarkWorkload$/./^db=mariadb$ 10x"
)
declare -A interleaved=(
	[postgres]="^BenchmarkInterleaved(Fenced)?$/././^db=postgres$ 1500x"
	[mariadb]="^BenchmarkInterleaved(Fenced)?$/././^db=mariadb$ 500x"
)
# COUNT rounds of -count 1 rather than one -count COUNT: go test takes the
# samples of one benchmark back to back, so a burst of load from another
# user of the machine would land on all samples of one side of a pair.
# Rounds interleave the sides over the whole run, and every other round
# reverses their order (BENCH_REVERSE, see bench/doc.go).
for ((round = 1; round <= (${#dbs[@]} ? COUNT : 0); round++)); do
	echo "round $round of $COUNT" >&2
	if ((round % 2 == 0)); then
		export BENCH_REVERSE=1
	else
		unset BENCH_REVERSE
	fi
	for db in "${dbs[@]}"; do
		start=$(date +%s)
		while read -r pattern benchtime; do
			go test ./bench/ -run '^$' -bench "$pattern" -benchtime "$benchtime" -count 1 -timeout 30m >>"${raw[$db]}"
		done <<<"${groups[$db]}"
		read -r pattern benchtime <<<"${interleaved[$db]}"
		go test ./bench/ -run '^$' -bench "$pattern" -benchtime "$benchtime" -count 1 -timeout 30m >>"${interleavedraw[$db]}"
		seconds[$db]=$((seconds[$db] + $(date +%s) - start))
	done
done
unset BENCH_REVERSE
# The run viewer's pages (package runview): a run of 1,000 invocations on
# each database, and the list page's queries over 100,000 runs on
# PostgreSQL. Taken with PostgreSQL's benchmarks, in rounds of their own.
viewraw=bench/testdata/bench-runview.txt
if [[ " ${dbs[*]} " == *" postgres "* ]]; then
	: >"$viewraw"
	for ((round = 1; round <= COUNT; round++)); do
		echo "runview round $round of $COUNT" >&2
		go test ./runview/ -run '^$' -bench '^Benchmark(RunPage|ListPage)$' -count 1 -timeout 30m >>"$viewraw"
	done
fi
# Retention (bench/purge_test.go): PurgeFeatureRuns on PostgreSQL holding a
# million runs with their children, and the write workload's latency on
# other runs without and with a purge. Opt-in, as seeding takes minutes:
# BENCH_PURGE=1 runs it once; otherwise the last results are kept.
purgeraw=bench/testdata/bench-purge.txt
if [ -n "${BENCH_PURGE:-}" ]; then
	echo "purge benchmark (seeds a million runs)" >&2
	go test ./bench/ -run '^TestPurgeBenchmark$' -v -count 1 -timeout 60m |
		sed -n 's/^ *purge_test\.go:[0-9]*: //p' | grep -v '^seed statement' >"$purgeraw"
	echo "taken $(date -u '+%Y-%m-%d %H:%M UTC') at $(git describe --always --dirty 2>/dev/null || echo unknown)," \
		"load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" >>"$purgeraw"
fi
purgesummary="not run yet: BENCH_PURGE=1 scripts/bench.sh"
if [ -s "$purgeraw" ]; then
	purgesummary=$(cat "$purgeraw")
fi
code=$(git describe --always --dirty 2>/dev/null || echo unknown)
for db in "${dbs[@]}"; do
	if ! grep -q '^Benchmark.*impl=repository' "${raw[$db]}"; then
		echo "no $db benchmark ran (is the server up?)" >&2
		exit 1
	fi
	sed -i "/^$db /d" "$runs"
	echo "$db ${seconds[$db]} $COUNT $code $(date -u '+%Y-%m-%d %H:%M UTC')" >>"$runs"
done

# run DB prints how the results of DB were taken, for BENCHMARKS.md.
run() {
	local db secs count commit date
	read -r db secs count commit date < <(grep "^$1 " "$runs") || { echo "no results"; return; }
	echo "${count} samples per benchmark, taken $date at $commit, one per round of \`go test -count 1\` (see below), in $((secs / 60)) min $((secs % 60)) s"
}

pgcols='/impl@(pgx repository naive)'
tables=$(benchstat -format csv -col "$pgcols" "${raw[postgres]}" 2>/dev/null | go run ./bench/internal/benchmd)
summary=$(benchstat -col "$pgcols" "${raw[postgres]}")
mycols='/impl@(mysql repository)'
mytables=$(benchstat -format csv -col "$mycols" "${raw[mariadb]}" 2>/dev/null | go run ./bench/internal/benchmd -base mysql -db MariaDB)
mysummary=$(benchstat -col "$mycols" "${raw[mariadb]}")
# The fenced moves against the same moves unfenced, by the repository, on
# both databases: each side of a pair comes from one file.
fencedcols='/impl@(repository fenced)'
fenced=$(benchstat -format csv -col "$fencedcols" "${raw[postgres]}" "${raw[mariadb]}" 2>/dev/null | go run ./bench/internal/benchmd -fenced)

viewsummary=$(benchstat "$viewraw" 2>/dev/null || echo "no results: run scripts/bench.sh with PostgreSQL")
interleavedsummary=$(for f in "${interleavedraw[postgres]}" "${interleavedraw[mariadb]}"; do
	benchstat -filter '.unit:ratio' "$f" 2>/dev/null || echo "no results in $f: run scripts/bench.sh"
done)

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
pg=$(psql "$dsn" -Atc 'SELECT version()' 2>/dev/null || echo unknown)
my=$(mariadb -uroot -h127.0.0.1 -NBe 'SELECT VERSION()' 2>/dev/null || echo unknown)

cat >BENCHMARKS.md <<EOF
# Benchmarks

The repository's writes against the same statements hand-written over
[pgx](https://github.com/jackc/pgx) (\`pgxpool\`), and against a naive GORM
port of the original TypeScript plan, on the same PostgreSQL database in the
same \`go test -bench\` run; and, [below](#mariadb), against the same
statements hand-written over database/sql and
[go-sql-driver/mysql](https://github.com/go-sql-driver/mysql) on the same
MariaDB database in the same run; and, [last](#fenced-against-unfenced),
the moves that \`Repository.AtStep\` fences against the same moves
unfenced, on both. Generated by \`scripts/bench.sh\`; do not edit by
hand.

- Date: $(date -u '+%Y-%m-%d %H:%M UTC')
- Machine: ${cpu:-unknown CPU}, $(nproc) cores (GOMAXPROCS $(nproc)), $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)
- PostgreSQL: ${pg} on loopback
- MariaDB: ${my} on loopback
- Go: $(go env GOVERSION), $(go env GOOS)/$(go env GOARCH)
- PostgreSQL samples: $(run postgres)
- MariaDB samples: $(run mariadb)
- Regenerate: \`scripts/bench.sh\`, or \`BENCH_DATABASES=mariadb scripts/bench.sh\` for one database, keeping the other's results (raw results: \`bench/testdata/bench.txt\`, \`bench/testdata/bench-mariadb.txt\`)

## What is measured

See \`bench/doc.go\` for the details. In short:

- **repository** is \`repository.New\` on a \`*gorm.DB\` of GORM's default
  configuration (its logger's output discarded, as it would split result
  lines), over \`database/sql\` and pgx's stdlib driver. **pgx** is \`bench/baseline_test.go\`: the same SQL text as
  the repository sends (GORM's INSERT for creates), bound with pgx, with no
  input validation. Both use pgx's default statement cache (each statement is
  prepared once per connection), 8 connections at most, and encode JSON
  arguments with \`internal/canonjson.Marshal\`, so both do the same
  client-side JSON work.
- **naive** is \`bench/naive_test.go\`: what a GORM user would write from
  the original TypeScript plan, on GORM's default configuration (so every
  write runs in a transaction of its own) with \`TranslateError\` on, over
  the same driver and pool size. Transitions are \`Updates\` guarded by
  status, then a \`First\` of the row when nothing changed; creates are
  \`Create\` with \`ON CONFLICT DO NOTHING\` and \`encoding/json\`; the
  memory append reads the run, merges in Go and writes the whole array
  back. It returns the repository's outcomes, but is left out of the
  memory append scaling.
- The benchmark database has \`synchronous_commit = ${BENCH_SYNCHRONOUS_COMMIT:-off}\`: a commit does
  not wait for its WAL flush, which costs every side the same and, on this
  shared virtual disk, is slow and erratic enough (1 to 3 ms) to hide the
  client-side difference being compared.
- The rows a benchmark needs are inserted, and the database analyzed
  (\`ANALYZE\`), before its timed calls, as autovacuum would on a
  production server: on this test server, which runs without it, the
  two sides' connections had kept different plans for the same UPDATE
  (see \`bench/env_test.go\`). Both go through a pool of their own, which
  no timed side uses: the calls on the connection that had seeded were
  faster (see \`bench/doc.go\`).
- Times are medians over the samples with benchstat's 95% confidence
  interval; *ratio* is repository / pgx of the medians, and *ratio vs
  naive* repository / naive, below 1 where the repository is faster than
  the naive port. *benchstat* shows benchstat's own comparison of the
  repository with pgx: \`~\` when the difference is not significant at
  p < 0.05. *client CPU* is the CPU time of the test process per op
  (getrusage): the client's share of the cost, without the server's. It is
  the part the repository's code decides, and steadier than the wall time
  when other users load the machine. allocs/op and B/op are Go heap
  allocations per op. *sent B/op* counts the bytes written to the
  database connections, at the socket: equal for repository and pgx, or a
  few bytes apart where GORM writes a NULL inline that the baseline binds,
  they show the same statements and arguments go out.
- The script runs the whole suite ${COUNT} times, \`-count 1\` each time,
  rather than once with \`-count ${COUNT}\`, which would take all samples
  of one side back to back: then a burst of load from another user of this
  machine would shift one side only. Such noise remains, and the confidence
  intervals show it. Every other round runs each benchmark's sides in
  reverse order, and the naive side runs in processes of its own; yet
  a side's time still depends on what ran before it, as the
  [interleaved](#interleaved) ratios below show.

${tables}

## benchstat output

\`\`\`
${summary}
\`\`\`

## MariaDB

- **repository** is \`repository.New\` on a \`*gorm.DB\` of GORM's default
  configuration over \`gorm.io/driver/mysql\` (which asks the server its
  version), database/sql and go-sql-driver/mysql. **mysql** is the same
  baseline as **pgx** (\`bench/baseline_test.go\`) over database/sql and
  go-sql-driver/mysql directly, sending the statements the repository
  sends on MariaDB (\`bench/mariadb_test.go\`): GORM's INSERT … ON
  DUPLICATE KEY UPDATE for creates; for transitions the guarded UPDATE,
  then, when it changed no row, the SELECT … LOCK IN SHARE MODE of the
  outcome code, both rendered by package \`internal/dialect/mariadb\` from
  the repository's guarded updates, with their \`?\` bound in the order
  \`dialect.Statement.Args\` gives.
- Both open the same DSN (\`TEST_MARIADB_DSN\`, default internal/dbtest's,
  with parseTime on), in pools of 8 connections, on one database created
  for the run and dropped after it. The DSN leaves \`interpolateParams\`
  off, the driver's default, for both: each statement with arguments is
  then prepared, executed and closed on the server, two round trips.
- The server's settings are its own, untouched: with
  \`innodb_flush_log_at_trx_commit = 1\` (the default) every write that
  changes a row waits for its redo log flush, which costs both sides the
  same and makes the happy path slower and noisier than on PostgreSQL. A
  replay changes no row and waits for none.
- *sent B/op* differs by 3 bytes per timestamp: gorm.io/driver/mysql
  makes GORM's NowFunc round to the millisecond (its default datetime
  precision), which the repository's timestamps come from, so they go out
  as shorter text than the baseline's microseconds.
- Ratios and columns are as above, with **mysql** as the base.

${mytables}

## benchstat output (MariaDB)

\`\`\`
${mysummary}
\`\`\`

${fenced}

## Interleaved

The tables above take each side's calls in a loop of their own, one side
after the other. On this 2-core virtual machine a side's time then
depends on what ran before it, and on how long the machine idles between
its calls, by as much as the differences being measured: replays that
send the same statements as pgx's have come out 0.6x to 1.1x pgx's time
from one run to the next (see [Performance](docs/performance.md)).
\`BenchmarkInterleaved\` (\`bench/interleaved_test.go\`) is the check on
them: the repository's call and the baseline's alternate in one loop,
each first in every other pair, so that both meet the same load. *ratio*
is the repository's time over the baseline's in each sample, medians of
${COUNT} rounds, on PostgreSQL (\`db=postgres\`, against pgx) and MariaDB
(\`db=mariadb\`, against go-sql-driver/mysql). \`InterleavedFenced\` does
the same for the fenced moves against the same moves unfenced: *ratio*
is fenced / unfenced.

\`\`\`
${interleavedsummary}
\`\`\`

## Run viewer

The pages of package \`runview\` (\`runview/bench_test.go\`):
**RunPage** renders the page of a run with 1,000 invocations, three levels
deep, on each database, and stops if it takes another number of queries
than a run of 25; **ListPage** over 100,000 runs on PostgreSQL, each filter
timed for its queries alone (\`/queries\`, the target being a median under
20 ms) and for the whole page (\`/page\`). Medians of ${COUNT} rounds.

\`\`\`
${viewsummary}
\`\`\`

## Retention

\`Repository.PurgeFeatureRuns\` on PostgreSQL holding 1,000,000 runs, each
with a phase result, an agent invocation, a stopped sandbox and a
completed CTA event, the oldest 100,000 with a sub-agent invocation too
(5.1 million rows), 90% of them finished and purgeable
(\`bench/purge_test.go\`, run once with \`BENCH_PURGE=1\`). *Workload* is
4 workers each creating a run, a phase and an invocation, finishing them
and completing the run, 7 writes in a row on runs the purge never takes,
for 20 s: first alone, then while one purger calls
\`PurgeFeatureRuns(ctx, cutoff, 1000)\` in a loop; latency is per write.
Then one purger, and four, purge alone for 20 s each. Each line is one
measurement, not a median, on the machine whose load is given last.

\`\`\`
${purgesummary}
\`\`\`
EOF
echo "wrote BENCHMARKS.md" >&2
