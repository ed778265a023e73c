// Package citus holds the tests that run on a Citus cluster with
// schema-based sharding: the contract suite, the migrate/sql files sent
// whole, and a benchmark of routed statements against plain PostgreSQL,
// each test in a tenant schema of its own, which Citus makes a
// distributed schema placed whole on one worker.
//
// They run where TEST_CITUS_DSN is set (scripts/citus.sh start prints
// it) and skip with one line otherwise. They live in a package of their
// own so that they get a test binary and a timeout of their own, and run
// beside the other packages' tests.
package citus
