package citus_test

import (
	"flag"
	"os"
	"runtime"
	"testing"
)

// TestMain runs up to 8 tests at once unless -test.parallel says
// otherwise, whatever the number of CPUs: each test waits mostly on the
// coordinator, which routes its statements to a worker, and creating and
// migrating a tenant schema there takes the longest.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.parallel"); f != nil && f.Value.String() == f.DefValue && runtime.GOMAXPROCS(0) < 8 {
		_ = f.Value.Set("8")
	}
	os.Exit(m.Run())
}
