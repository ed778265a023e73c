package reliability_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/canonjson"
	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// cursor reads the fuzzer's bytes as a stream of choices; past the end
// every choice is 0.
type cursor struct {
	data []byte
	// history holds the values made so far, for repeats.
	history []any
}

func (c *cursor) next() int {
	if len(c.data) == 0 {
		return 0
	}
	b := c.data[0]
	c.data = c.data[1:]
	return int(b)
}

func (c *cursor) done() bool { return len(c.data) == 0 }

var (
	fuzzStrings = []string{"", "a", "b", "é", "e\u0301", "\u2028", "<&>", `"q"`, `a\b`, "😀", "\t\n", "\x7f", "\ufffd", "1"}
	fuzzKeys    = []string{"a", "b", "B", "é", "", "aa", "😀"}
	// fuzzNumbers are numbers as JSON text, in several spellings of some
	// values, and extremes: both sides of each limit on numbers.
	fuzzNumbers = []string{"0", "-0", "0.0", "1", "1.0", "1e0", "10e-1", "0.1", "1e-1", "100", "1e2", "-2.5", "-25e-1",
		"12345678901234567890", "1.2345678901234567890e19", "1e308", "5e-324", "1e400",
		"1e309", "1e399", "1e-400", "1.7976931348623157e308", "2.4703282292062328e-324", "12345678901234567890123",
		"0." + strings.Repeat("3", canonjson.MaxFractionDigits), "0." + strings.Repeat("3", canonjson.MaxFractionDigits+1),
		"-1.7976931348623159e308", "2.4703282292062327e-324"}
)

// value makes a JSON value from the choices, at most depth levels deep.
// Some values are JSON text (json.RawMessage) in a random spelling, some
// repeat an earlier value in another spelling, and a few cannot be stored.
func (c *cursor) value(depth int) any {
	var v any
	switch k := c.next() % 12; {
	case k == 0:
		v = nil
	case k == 1:
		v = c.next()%2 == 0
	case k == 2:
		v = c.next() - 128
	case k == 3:
		v = json.RawMessage(fuzzNumbers[c.next()%len(fuzzNumbers)])
	case k == 4:
		var b strings.Builder
		for range c.next() % 3 {
			b.WriteString(fuzzStrings[c.next()%len(fuzzStrings)])
		}
		v = b.String()
	case k == 5 && depth > 0:
		a := []any{}
		for range c.next() % 4 {
			a = append(a, c.value(depth-1))
		}
		v = a
	case k == 6 && depth > 0:
		m := map[string]any{}
		for range c.next() % 4 {
			m[fuzzKeys[c.next()%len(fuzzKeys)]] = c.value(depth - 1)
		}
		v = m
	case k == 7 || k == 8:
		if len(c.history) > 0 {
			earlier := c.history[c.next()%len(c.history)]
			if raw, err := json.Marshal(earlier); err == nil {
				return json.RawMessage(c.respell(raw))
			}
			return earlier
		}
		v = "first"
	case k == 9:
		// Values without a canonical form: the whole append is refused.
		v = []any{"bad \xff utf-8", "nul \x00", math.NaN(), json.RawMessage(`"\ud800"`)}[c.next()%4]
	default:
		v = c.next() % 3
	}
	// Repeating large values inside new ones would grow them exponentially
	// with the input's length; the fuzzer needs repeats, not size.
	if weight(v) <= 16 {
		c.history = append(c.history, v)
	}
	return v
}

// weight counts the values in v, and the bytes of JSON text.
func weight(v any) int {
	switch v := v.(type) {
	case []any:
		n := 1
		for _, e := range v {
			n += weight(e)
		}
		return n
	case map[string]any:
		n := 1
		for _, e := range v {
			n += weight(e)
		}
		return n
	case json.RawMessage:
		return len(v)
	}
	return 1
}

// respell rewrites the JSON text raw into a JSON-equal spelling chosen by
// the cursor: whitespace around tokens, object members in reverse order,
// and letters and U+FFFD in strings as \u escapes.
func (c *cursor) respell(raw []byte) []byte {
	var out bytes.Buffer
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return raw
	}
	c.write(&out, v)
	return out.Bytes()
}

func (c *cursor) write(out *bytes.Buffer, v any) {
	if c.next()%2 == 0 {
		out.WriteString(" \n\t"[:c.next()%4])
	}
	switch v := v.(type) {
	case []any:
		out.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				out.WriteByte(',')
			}
			c.write(out, e)
		}
		out.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if c.next()%2 == 0 {
			slices.Reverse(keys)
		}
		out.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				out.WriteByte(',')
			}
			c.writeString(out, k)
			out.WriteByte(':')
			c.write(out, v[k])
		}
		out.WriteByte('}')
	case string:
		c.writeString(out, v)
	case json.Number:
		if c.next()%2 == 0 && !strings.ContainsAny(string(v), ".eE") {
			out.WriteString(string(v) + ".0e0")
		} else {
			out.WriteString(string(v))
		}
	default:
		b, _ := json.Marshal(v)
		out.Write(b)
	}
}

func (c *cursor) writeString(out *bytes.Buffer, s string) {
	out.WriteByte('"')
	for _, r := range s {
		switch {
		case r < 0x80 && (r >= 'a' && r <= 'z') && c.next()%2 == 0:
			fmt.Fprintf(out, `\u%04x`, r)
		case r == '\ufffd' && c.next()%2 == 0:
			out.WriteString([]string{`\ufffd`, `\uFFFD`}[c.next()%2])
		case r == '"' || r == '\\':
			out.WriteByte('\\')
			out.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(out, `\u%04x`, r)
		default:
			out.WriteRune(r)
		}
	}
	out.WriteByte('"')
}

// memoryModel is what a run's memories must be: each value's canonical
// JSON, in order of first appearance, appended unless a JSON-equal value
// is already there.
type memoryModel struct {
	values   []string
	finished bool
}

// expect returns the memories after appending vs and whether the append
// must succeed, fail with ErrInvalidInput or fail with
// ErrInvalidTransition.
func (m memoryModel) expect(vs []any) ([]string, error) {
	var added []string
	for _, v := range vs {
		b, err := canonjson.Marshal(v)
		if err != nil {
			return m.values, repository.ErrInvalidInput
		}
		if !slices.Contains(m.values, string(b)) && !slices.Contains(added, string(b)) {
			added = append(added, string(b))
		}
	}
	if m.finished && len(added) > 0 {
		return m.values, repository.ErrInvalidTransition
	}
	return append(slices.Clip(m.values), added...), nil
}

// storedMemories returns the canonical JSON of each memory of run.
func storedMemories(t *testing.T, ctx context.Context, db *gorm.DB, run uuid.UUID) []string {
	t.Helper()
	var row models.FeatureRun
	if err := db.WithContext(ctx).Take(&row, "id = ?", run).Error; err != nil {
		t.Fatalf("read run: %v", err)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(row.Memories, &elems); err != nil {
		t.Fatalf("memories are not a JSON array: %v: %s", err, row.Memories)
	}
	out := make([]string, len(elems))
	for i, e := range elems {
		c, err := canonjson.Canonicalize(e)
		if err != nil {
			t.Fatalf("memory %d has no canonical form: %v: %s", i, err, e)
		}
		out[i] = string(c)
	}
	return out
}

// checkAppends decodes data into a run created with some memories, then a
// sequence of appends (and perhaps the run's completion), and checks after
// each call that the stored memories equal the model.
func checkAppends(t *testing.T, ctx context.Context, db *gorm.DB, repo *repository.Repository, data []byte) {
	c := &cursor{data: data}
	var model memoryModel
	var initial []any
	for range c.next() % 4 {
		initial = append(initial, c.value(3))
	}
	want, wantErr := model.expect(initial)
	run, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "fuzz", Memories: initial})
	if !errors.Is(err, wantErr) {
		t.Fatalf("create with memories %#v: got %v, want %v", initial, err, wantErr)
	}
	if err != nil {
		return
	}
	model.values = want
	for op := 0; !c.done(); op++ {
		if k := c.next(); k%16 == 15 {
			if err := repo.CompleteFeatureRun(ctx, run); err != nil {
				t.Fatalf("op %d: complete: %v", op, err)
			}
			model.finished = true
			continue
		}
		var batch []any
		for range c.next() % 5 {
			batch = append(batch, c.value(3))
		}
		want, wantErr := model.expect(batch)
		err := repo.UpdateFeatureRunMemories(ctx, run, batch)
		if !errors.Is(err, wantErr) {
			t.Fatalf("op %d: append %#v to %q: got %v, want %v", op, batch, model.values, err, wantErr)
		}
		model.values = want
		if got := storedMemories(t, ctx, db, run); !slices.Equal(got, want) {
			t.Fatalf("op %d: after appending %#v:\n got %q\nwant %q", op, batch, got, want)
		}
	}
	if got := storedMemories(t, ctx, db, run); !slices.Equal(got, model.values) {
		t.Fatalf("at the end:\n got %q\nwant %q", got, model.values)
	}
}

// FuzzMemoryAppend appends random sequences of random JSON values, some
// JSON-equal to earlier ones in another spelling and some unstorable, to
// runs on an in-memory SQLite, and compares the stored memories with a
// model keyed by canonical JSON after every call. Its corpus also runs on
// PostgreSQL and MariaDB in TestMemoryAppendCorpusOnServers.
func FuzzMemoryAppend(f *testing.F) {
	db := dbtest.SQLite(f)
	ctx := context.Background()
	if err := migrate.Up(ctx, db); err != nil {
		f.Fatalf("migrate: %v", err)
	}
	repo := repository.New(db)
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAppends(t, ctx, db, repo, data)
	})
}

// TestMemoryAppendCorpusOnServers runs FuzzMemoryAppend's committed
// corpus on PostgreSQL, whose append compares values as jsonb rather than
// by canonical text, and on MariaDB, whose append compares the text of
// each element JSON_TABLE returns.
func TestMemoryAppendCorpusOnServers(t *testing.T) {
	t.Parallel()
	corpus := readCorpus(t, "FuzzMemoryAppend")
	for _, d := range servers {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			ctx, db, repo := freshRepo(t, d.Open)
			for name, data := range corpus {
				t.Run(name, func(t *testing.T) { checkAppends(t, ctx, db, repo, data) })
			}
		})
	}
}

// readCorpus reads the []byte inputs of a fuzz target's committed corpus,
// in the "go test fuzz v1" format.
func readCorpus(t *testing.T, target string) map[string][]byte {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read corpus: %v", err)
	}
	corpus := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		if !sc.Scan() || sc.Text() != "go test fuzz v1" || !sc.Scan() {
			t.Fatalf("%s: not a go test fuzz v1 file", e.Name())
		}
		arg, ok := strings.CutPrefix(sc.Text(), "[]byte(")
		arg, ok2 := strings.CutSuffix(arg, ")")
		data, err := strconv.Unquote(arg)
		if !ok || !ok2 || err != nil {
			t.Fatalf("%s: want one []byte argument, got %q", e.Name(), sc.Text())
		}
		corpus[e.Name()] = []byte(data)
	}
	if len(corpus) == 0 {
		t.Fatalf("no corpus in %s", dir)
	}
	return corpus
}
