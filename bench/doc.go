// Package bench measures what the repository's convenience costs: each of
// its fifteen writes, on PostgreSQL, against a baseline that sends the same
// SQL statement hand-written over pgx, and against a naive port to GORM of
// the original TypeScript plan; and on MariaDB against the same baseline
// over database/sql and go-sql-driver/mysql. It also measures what fencing
// costs: the two moves that Repository.AtStep fences, made through it,
// against the same moves unfenced, on both databases. It holds benchmarks
// and the tests that keep the comparison fair; scripts/bench.sh runs the
// benchmarks and writes BENCHMARKS.md. To run some directly:
//
//	go test ./bench/ -run '^$' -bench 'Write|Replay' -benchtime 1500x -count 6
//	go test ./bench/ -run '^$' -bench '^Benchmark(Write|Replay)$/./^db=mariadb$' -benchtime 1500x -count 6
//	go test ./bench/ -run '^$' -bench '^Benchmark(Write|Replay)$/^(UpdateFeatureRunPhase|UpdateSandboxStatus)$/^impl=(repository|fenced)$' -benchtime 1500x -count 6
//
// # Benchmarks
//
// Every benchmark has three sides, named by the impl key so that benchstat
// puts them side by side (benchstat -col /impl), except
// BenchmarkAppendScaling, which has the first two:
//
//   - impl=repository is repository.New on a *gorm.DB of GORM's default
//     configuration (but its logger's output is discarded, since go test
//     would print a warning on stdout, splitting a result line) over
//     database/sql and pgx's stdlib driver.
//   - impl=pgx is the baseline: a pgxpool and the same SQL text, with NULL
//     bound as a parameter where GORM writes it inline. It does no input
//     validation, but encodes JSON arguments with canonjson.Marshal as the
//     repository does, so both do the same client-side JSON work. It
//     returns the repository's outcomes (nil, ErrNotFound, a
//     *repository.TransitionError), judged from the outcome codes of
//     package internal/dialect as the repository judges them, so the
//     workload can drive either, and TestBaselineWritesLikeRepository
//     checks that both leave the same rows. Its creates are written out,
//     and TestBaselineSendsRepositoryStatements checks they are the
//     repository's, text for text; its transitions are the repository's
//     guarded updates, recovered from what a repository on a DryRun session
//     renders and rendered again by the database's Dialect.Guard, as the
//     repository renders them.
//   - impl=naive is what a GORM user would write from the TypeScript plan,
//     on GORM's default configuration (but for the logger, and
//     TranslateError to recognise a missing parent), so every write is a
//     transaction of its own. A transition is an Updates guarded by the
//     statuses it may leave, then, when it changed no row, a First of the
//     row; a create is Create with ON CONFLICT DO NOTHING, a random ID when
//     none is given and JSON from encoding/json; the memory append reads
//     the run, merges in Go and writes the whole array back, in a
//     transaction without a row lock. It returns the repository's outcomes,
//     which TestNaiveOutcomesLikeRepository checks call by call, but not
//     quite its rows, which no test compares.
//
// The writes that AtStep fences, UpdateFeatureRunPhase and
// UpdateSandboxStatus, have one side more on each database, right after
// the repository's: impl=fenced, the same repository through AtStep, whose
// moves are the fenced forms of the same guarded updates (one statement
// still, also guarded by the step the row records). Its happy path moves
// rows that record no step yet; its replay path makes one call before
// the timed ones, which records its step in the row found as asked, so
// that every timed call finds the row as asked at its own step, as a
// replayed workflow step does. TestFencedSideFences checks that it writes
// the step where, and only where, it should. benchstat compares it with
// impl=repository (-col '/impl@(repository fenced)').
//
// On MariaDB, named with the key db=mariadb after the write (PostgreSQL's
// names carry no db key, so that they still compare with earlier
// results), there are two sides: impl=repository, on GORM's default
// configuration over gorm.io/driver/mysql, and impl=mysql, the same
// baseline over database/sql and go-sql-driver/mysql, with MariaDB's
// statements: a transition is the guarded UPDATE, then, when it changed no
// row, the probe SELECT … LOCK IN SHARE MODE of the outcome code, each
// binding its ? as dialect.Statement.Args orders them. The naive side and
// the append scaling are PostgreSQL's only.
//
// The benchmarks are:
//
//   - BenchmarkWrite/<write>: the happy path of each write, one statement
//     that inserts a row or moves one to a new state. The rows each call
//     needs are inserted beforehand, outside the timed region, b.N at once.
//   - BenchmarkReplay/<write>: the replay path: a create with an existing
//     ID, a transition to the state the row is already in, an append of
//     memories already present. Creates are one INSERT that conflicts; the
//     others are the guarded statement that changes no row and returns the
//     row's state, in one round trip on PostgreSQL, and on MariaDB the
//     UPDATE and the probe.
//   - BenchmarkWorkload/workers=N: whole simulated feature runs
//     (workload.Generate, 80 steps each), one after another (N=1) or on
//     eight concurrent workers (N=8); it reports runs/s.
//   - BenchmarkAppendScaling/stored=N: a memory append to a run that holds
//     10, 1,000 or 10,000 memories.
//
// The statements named above are those of the repository and pgx. The
// naive side wraps each write in BEGIN and COMMIT, reads the whole row
// where the others read its status, and rewrites the row on a replayed
// phase change, since it guards that by status alone.
//
// Besides time, B/op and allocs/op, each reports per op:
//
//   - sent-B/op and recv-B/op: the bytes written to and read from the
//     store's connections, counted by a net.Conn wrapper that pgx dials
//     through. Equal bytes for the repository and pgx show they send the
//     same statement and arguments; a constant sent-B/op across
//     BenchmarkAppendScaling shows an append sends only the new values, not
//     the stored array.
//   - cpu-sec/op: the CPU time of the whole test process (user and system,
//     from getrusage; Unix only), so the client's share of the cost without
//     the server's, which on a shared machine is steadier than wall time.
//     It includes the Go runtime's own work, such as the garbage collector
//     and the scheduler's spinning while a query is in flight.
//
// # Setup
//
// The first benchmark on each database creates a database of its own on
// the server at TEST_POSTGRES_DSN or TEST_MARIADB_DSN (default:
// internal/dbtest's), migrates it with migrate.Up, and TestMain drops it
// when the benchmarks end (a process killed before then leaves it behind,
// named persistence_bench_*). Without a server the benchmarks and the
// tests of that database skip with one line, or fail when CI is set. A
// plain `go test` runs only TestBaselineWritesLikeRepository on each
// database and TestNaiveOutcomesLikeRepository, which take about a
// second, and -short skips them, and TestBaselineSendsRepositoryStatements,
// which needs no server.
//
// BenchmarkInterleaved and BenchmarkInterleavedFenced are the check on
// the others: they alternate the two sides' calls in one loop, the
// repository against the baseline and the fenced moves against the same
// moves unfenced, so that both sides meet the same load, and report the
// ratio of their times.
//
// The sides of a benchmark run one after another, in the order above, or
// in reverse when BENCH_REVERSE is set. scripts/bench.sh reverses every
// other round, so that neither side of a comparison always runs first,
// right after whatever ran before it; and it runs impl=naive in go test
// processes of its own: run between the other sides, its heavier load had
// changed their times by a fifth, and not equally (see
// docs/performance.md).
//
// All sides write to the same tables in the same database, each through a
// pool of at most 8 connections (the workload's worker count). On
// PostgreSQL pgx's default statement cache prepares each statement once
// per connection, so every later execution is one round trip. On MariaDB
// both sides open the same DSN, which leaves go-sql-driver/mysql's
// interpolateParams off: each statement with arguments is prepared,
// executed and closed, two round trips, on both sides. The MariaDB
// server's settings are left as they are: each write that changes a row
// waits for InnoDB's log flush (innodb_flush_log_at_trx_commit), the same
// for both sides.
//
// The seeder analyzes the database (ANALYZE on PostgreSQL) after each
// insert, outside the timed region, as a production server's autovacuum
// would: on a server without autovacuum, whose tables are never analyzed,
// the two sides' connections could keep different plans for the same
// statement (see env.analyze). It seeds and analyzes through a pool of
// its own, which no timed side uses: on PostgreSQL the calls on the
// connection that had seeded were faster than the same calls on an
// identical pool (see backend.ids).
//
// The database sets synchronous_commit to BENCH_SYNCHRONOUS_COMMIT, or off
// by default: then a commit does not wait for its WAL flush, which costs
// every side the same and on a shared virtual disk is slow and erratic
// enough (1 to 3 ms here) to hide the client-side difference the
// benchmarks are about. Set it to on to measure durable commits.
package bench
