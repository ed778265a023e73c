// Package leanbuild checks that a program using the package on
// PostgreSQL or MariaDB alone builds without cgo and links neither
// SQLite's cgo driver nor the testing package. Its programs are in
// testdata, which go test ./... does not build as packages of its own.
package leanbuild

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// forbidden are the packages a program that opens no SQLite must not
// link: the cgo driver (and GORM's dialector that imports it), cgo's
// runtime, and testing, whose flags and code a production binary has
// no use for.
var forbidden = []string{
	"github.com/mattn/go-sqlite3",
	"gorm.io/driver/sqlite",
	"runtime/cgo",
	"testing",
}

func TestServerOnlyProgramsAreLean(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	for _, c := range []struct{ dir, driver string }{
		{"pgonly", "gorm.io/driver/postgres"},
		{"mariadbonly", "gorm.io/driver/mysql"},
	} {
		t.Run(c.dir, func(t *testing.T) {
			t.Parallel()
			pkg := "./testdata/" + c.dir
			deps := goCmd(t, goTool, "list", "-deps", pkg)
			// The program must really use the package, or the check
			// proves nothing.
			for _, want := range []string{
				"github.com/agentpipeline/persistence/repository",
				"github.com/agentpipeline/persistence/internal/dialects",
				c.driver,
			} {
				if !slices.Contains(deps, want) {
					t.Fatalf("%s does not link %s: the check would pass vacuously", c.dir, want)
				}
			}
			for _, bad := range forbidden {
				if slices.Contains(deps, bad) {
					t.Errorf("%s links %s; a program that opens no SQLite must not (see docs/databases-build.md)", c.dir, bad)
				}
			}
			if testing.Short() {
				// Building without cgo compiles the program's whole
				// graph again, standard library included, the first
				// time: a minute or more on two cores.
				t.Skip("-short: listed, not built")
			}
			goCmd(t, goTool, "build", "-o", filepath.Join(t.TempDir(), c.dir), pkg)
		})
	}
}

// goCmd runs the go command with cgo off and returns its output's
// lines: a program that needs cgo then fails to build.
func goCmd(t *testing.T, goTool string, args ...string) []string {
	t.Helper()
	cmd := exec.Command(goTool, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("CGO_ENABLED=0 go %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.Fields(string(out))
}
