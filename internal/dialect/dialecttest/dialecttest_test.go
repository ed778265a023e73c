package dialecttest

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// recorder is a testing.TB that records how Unreachable ends a test.
type recorder struct {
	testing.TB
	mu    sync.Mutex
	lines []string
}

func (r *recorder) Helper() {}

func (r *recorder) end(line string) {
	r.mu.Lock()
	r.lines = append(r.lines, line)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) SkipNow()                         { r.end("skip") }
func (r *recorder) Skipf(format string, args ...any) { r.end("skip: " + fmt.Sprintf(format, args...)) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.end("fail: " + fmt.Sprintf(format, args...))
}

// call runs Unreachable for a test as the testing package would: on a
// goroutine of its own, which Goexit ends.
func (r *recorder) call(kind, dsn string) {
	var wg sync.WaitGroup
	wg.Go(func() { Unreachable(r, kind, dsn, errors.New("connection refused")) })
	wg.Wait()
}

func TestUnreachableSaysWhyOncePerServer(t *testing.T) {
	t.Setenv("CI", "")
	r := &recorder{TB: t}
	for range 3 {
		r.call("PostgreSQL", "postgres://once-a")
		r.call("MariaDB", "root@tcp(once-b)/")
	}
	var said, silent int
	for _, l := range r.lines {
		switch {
		case l == "skip":
			silent++
		case strings.HasPrefix(l, "skip: ") && strings.Contains(l, "connection refused"):
			said++
		default:
			t.Errorf("unexpected end %q", l)
		}
	}
	if said != 2 || silent != 4 {
		t.Errorf("%d skips said why and %d were silent; want 2 (one per server) and 4:\n%s", said, silent, strings.Join(r.lines, "\n"))
	}
}

func TestUnreachableFailsUnderCI(t *testing.T) {
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	for range 2 {
		r.call("PostgreSQL", "postgres://ci")
	}
	for _, l := range r.lines {
		if !strings.HasPrefix(l, "fail: PostgreSQL at postgres://ci is required when CI is set") {
			t.Errorf("under CI an absent server ended a test with %q; want a failure", l)
		}
	}
	if len(r.lines) != 2 {
		t.Errorf("%d ends for 2 calls", len(r.lines))
	}
}
