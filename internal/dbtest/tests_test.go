package dbtest

import (
	"flag"
	"strconv"
	"testing"

	"github.com/agentpipeline/persistence/internal/dialects"
)

// TestEveryDialectHasTest: each supported database has exactly one test
// opener, so that no database drops out of the contract suite unseen.
func TestEveryDialectHasTest(t *testing.T) {
	if len(Tests) != len(dialects.All) {
		t.Errorf("%d test openers for %d databases", len(Tests), len(dialects.All))
	}
	for _, d := range dialects.All {
		n := 0
		for _, test := range Tests {
			if test.Dialect == d {
				n++
			}
		}
		if n != 1 {
			t.Errorf("database %s has %d test openers in dbtest.Tests; want 1", d.Name, n)
		}
	}
}

func TestRaiseParallel(t *testing.T) {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	before := flag.Lookup("test.parallel").Value.String()
	RaiseParallel()
	got := flag.Lookup("test.parallel").Value.String()
	switch {
	case given && got != before:
		t.Errorf("-test.parallel=%s was given, and RaiseParallel changed it to %s", before, got)
	case !given && got != strconv.Itoa(Parallel):
		t.Errorf("-test.parallel is %s after RaiseParallel; want %d", got, Parallel)
	}
}
