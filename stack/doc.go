// Package stack tests the repository inside the stacks users deploy it in:
// PostgreSQL behind PgBouncer in transaction pooling mode, and an SQLite
// file in WAL mode written from many goroutines at once. It holds only
// tests.
//
// TestPgBouncer starts a PgBouncer of its own, from the pgbouncer
// executable (Debian's pgbouncer package), in front of a fresh database on
// the test server (TEST_POSTGRES_DSN, as for the contract suite). Through
// it, with pgx's default_query_exec_mode=exec, it makes every write of the
// contract and its replay from concurrent goroutines; it also shows that
// pgx's default mode fails there. Without pgbouncer it is skipped, or fails
// where the CI environment variable is set.
//
// TestSQLiteWAL runs transactions that read and then write from concurrent
// goroutines on an SQLite file opened with _txlock=immediate, and shows
// that without that setting many fail with "database is locked".
//
// To run them:
//
//	go test ./stack/ -count 1 -v
package stack
