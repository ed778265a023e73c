package dbtest

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/agentpipeline/persistence/internal/dialect/postgres/postgrestest"
)

// Parallel is how many parallel tests a package whose TestMain is Main
// runs at once unless -parallel says otherwise. go test's default,
// GOMAXPROCS, suits tests that compute; these mostly wait for a server
// (creating a schema and migrating it takes about a second on
// PostgreSQL and two on MariaDB, nearly all of it spent in the server's
// commits), so on a two-core machine two at a time leaves both cores
// idle. Each test still has a database or schema of its own; the bound
// keeps the connections of two packages' tests (go test ./... runs two
// packages at once on two cores), at most a few each, well under
// PostgreSQL's default max_connections of 100.
const Parallel = 8

// Main runs the tests of m, with Parallel parallel tests at once unless
// -test.parallel was given, drops the spare schemas of Migrated and
// vacuums the catalogs the tests' schemas left dead rows in (see
// postgrestest.DropSpares and postgrestest.VacuumCatalogs), and exits
// with their status.
func Main(m *testing.M) {
	RaiseParallel()
	code := m.Run()
	if err := errors.Join(postgrestest.DropSpares(), postgrestest.VacuumCatalogs()); err != nil {
		fmt.Fprintf(os.Stderr, "dbtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// RaiseParallel sets -test.parallel to Parallel unless it was given on
// the command line, for a TestMain that does more than Main.
func RaiseParallel() {
	if !flag.Parsed() {
		flag.Parse()
	}
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		// The flag exists in every test binary; Set fails only on a
		// value it cannot parse.
		_ = flag.Set("test.parallel", strconv.Itoa(Parallel))
	}
}
