// Package reliability holds no code: its tests check, with figures, the
// promise of package repository for whole pipeline workloads (see
// internal/workload) under replays, crashes and faults. RELIABILITY.md at
// the module root lists each check, its last figures and how to run it.
//
// The replay oracle runs on SQLite, PostgreSQL and MariaDB, and late
// writes (TestLateWrites: no write lands after its call returned an error)
// on an SQLite file, PostgreSQL and MariaDB; fault injection and deadlines
// run on PostgreSQL and MariaDB
// (TEST_POSTGRES_DSN and TEST_MARIADB_DSN, as for the contract suite), and
// the server restart on PostgreSQL. Fault injection and deadlines are
// skipped under -short. The server restart runs only with
// PERSISTENCE_RESTART_TEST=1, as it breaks every other test using the
// server at the time: run it on its own.
package reliability
