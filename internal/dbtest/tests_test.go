package dbtest

import (
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
