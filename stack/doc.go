// Package stack tests the repository inside the stacks users deploy it in.
// It holds only tests, each run on every supported database where it
// applies:
//
//   - TestEveryStatementThroughCallbacks registers a callback on every
//     GORM chain and gorm.io/plugin/opentelemetry, and checks that both see
//     exactly the statements that reach the driver, as many as each write's
//     path needs.
//   - TestReplicaNeverDecidesAWrite puts the repository behind
//     gorm.io/plugin/dbresolver with a replica that has no rows: every write
//     must answer as without it.
//   - TestPrepareStmt, TestDryRun, TestParameterizedQueries, TestNowFunc,
//     TestScopesIgnored and TestTablePrefixIgnored cover the GORM settings
//     and handles users bring.
//   - TestPgBouncer starts a PgBouncer of its own, from the pgbouncer
//     executable (Debian's pgbouncer package), in front of a fresh database
//     on the test server (TEST_POSTGRES_DSN, as for the contract suite).
//     Through it, with pgx's default_query_exec_mode=exec, it makes every
//     write of the contract and its replay from concurrent goroutines; it
//     also shows that pgx's default mode fails there. Without pgbouncer it
//     is skipped, or fails where the CI environment variable is set.
//   - TestPgBouncerLateWrites is reliability's TestLateWrites through such
//     a PgBouncer: writes blocked on a row lock that a transaction on a
//     direct connection holds, their context ended by cancel or deadline,
//     the lock freed 0 to 100 ms after the call returned, then a later
//     write. No call that returned an error may have its write land, and
//     the later write must stay, with as many server connections as the
//     calls need and with fewer, so that calls wait in PgBouncer's queue
//     where a cancel request finds nothing to stop.
//   - TestSQLiteWAL runs transactions that read and then write from
//     concurrent goroutines on an SQLite file opened with _txlock=immediate,
//     and shows that without that setting many fail with "database is
//     locked"; TestSQLiteBigAppendDoesNotLockOthersOut shows that a big
//     memory append does not hold other writers past the busy timeout.
//   - TestPreparedStatementsBounded makes 5,000 writes of every kind, under
//     deadlines from a second to a year or none, on a GORM with
//     PrepareStmt, and checks that GORM's statement cache stays small and
//     stops growing once every statement has been sent. On MariaDB it
//     checks the server's Prepared_stmt_count as well, on a MariaDB of its
//     own, started from the mariadbd and mariadb-install-db executables
//     (Debian's mariadb-server) with its data in a temporary directory:
//     without them it is skipped, or fails where CI is set.
//
// To run them:
//
//	go test ./stack/ -count 1 -v
package stack
