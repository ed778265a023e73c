package reliability_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/internal/canonjson"
	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// storedJSONSeed is one input of FuzzStoredJSON: JSON text and a Go string.
type storedJSONSeed struct {
	raw []byte
	s   string
}

// storedJSONSeeds are the numbers and spellings of U+FFFD that were once
// stored wrongly or refused wrongly, and both sides of each limit.
func storedJSONSeeds() []storedJSONSeed {
	raws := []string{
		`1e309`, `1e399`, `[1e309,1e399]`, `-1e350`, `1e-400`, `{"n":1e-400}`,
		"0." + strings.Repeat("1", canonjson.MaxFractionDigits+1),
		"0." + strings.Repeat("1", canonjson.MaxFractionDigits),
		`"\ufffd"`, "\"\ufffd\"", `"\uFFFD"`, `{"\ufffd":"a\ufffd"}`, "[\"\ufffd\xff\"]",
		`12345678901234567890123`, `[12345678901234567890123,-1.2345678901234567890123e22]`,
		`1.7976931348623157e308`, `1.7976931348623159e308`, `5e-324`,
		`2.4703282292062328e-324`, `2.4703282292062327e-324`, `{"a":1e-323,"b":1e308}`,
		`["` + strings.Repeat("x", 235) + `"` + strings.Repeat(",1e300", 15) + "]",
		`["` + strings.Repeat("x", 234) + `"` + strings.Repeat(",1e300", 15) + "]",
		`{"a":1e309,"a":1}`, `0`, `-0.0`, `"plain"`,
	}
	strs := []string{"\ufffd", `\ufffd`, "\xff", "\ufffd\xff", "\xef\xbf\xbd", "\xef\xbf", "a\x00", "", "é"}
	var seeds []storedJSONSeed
	for i := range max(len(raws), len(strs)) {
		seeds = append(seeds, storedJSONSeed{[]byte(raws[i%len(raws)]), strs[i%len(strs)]})
	}
	return seeds
}

// FuzzStoredJSON stores JSON text as a phase output and as a memory, and a
// Go string as object key and value beside the escape \ufffd, on an
// in-memory SQLite. Whatever canonjson accepts must be stored and read
// back JSON-equal, with every digit, decodable by encoding/json with
// numbers as float64s (none nonzero decoding as 0) and within canonjson's
// bound on its length; whatever
// it refuses must be refused with ErrInvalidInput naming the argument. The
// Go string must be stored exactly when it is valid UTF-8 without NUL.
// The seeds also run on PostgreSQL and MariaDB in
// TestStoredJSONSeedsOnServers.
func FuzzStoredJSON(f *testing.F) {
	db := dbtest.SQLite(f)
	ctx := context.Background()
	if err := migrate.Up(ctx, db); err != nil {
		f.Fatalf("migrate: %v", err)
	}
	repo := repository.New(db)
	for _, seed := range storedJSONSeeds() {
		f.Add(seed.raw, seed.s)
	}
	f.Fuzz(func(t *testing.T, raw []byte, s string) {
		checkStoredJSON(t, ctx, repo, raw, s)
	})
}

// TestStoredJSONSeedsOnServers runs FuzzStoredJSON's seeds and committed
// corpus on PostgreSQL, whose jsonb rewrites numbers and spacing, and on
// MariaDB, which checks and compares JSON as text.
func TestStoredJSONSeedsOnServers(t *testing.T) {
	t.Parallel()
	seeds := map[string]storedJSONSeed{}
	for i, seed := range storedJSONSeeds() {
		seeds["seed#"+strconv.Itoa(i)] = seed
	}
	for name, seed := range readStoredJSONCorpus(t) {
		seeds[name] = seed
	}
	for _, d := range servers {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			ctx, _, repo := freshRepo(t, d.Open)
			for name, seed := range seeds {
				t.Run(name, func(t *testing.T) { checkStoredJSON(t, ctx, repo, seed.raw, seed.s) })
			}
		})
	}
}

func checkStoredJSON(t *testing.T, ctx context.Context, repo *repository.Repository, raw []byte, s string) {
	if len(raw) == 0 {
		return // a nil json.RawMessage encodes as null, not as its text
	}
	run, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "fuzz"})
	if err != nil {
		t.Fatalf("create run: %v", err)
	}
	newPhase := func() uuid.UUID {
		id, err := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{FeatureRunID: run, Phase: "fuzz"})
		if err != nil {
			t.Fatalf("create phase result: %v", err)
		}
		return id
	}
	sqlite := repo.DB().Dialector.Name() == "sqlite"

	want, wantErr := canonjson.Canonicalize(raw)
	phase := newPhase()
	err = repo.PassPhaseResult(ctx, phase, json.RawMessage(raw))
	if wantErr != nil {
		wantRefused(t, err, "output", raw)
	} else {
		if err != nil {
			t.Fatalf("output %q (canonical %q) refused: %v", raw, want, err)
		}
		got, err := repo.GetPhaseResult(ctx, phase)
		if err != nil {
			t.Fatal(err)
		}
		checkReadBack(t, want, got.Output, sqlite)
	}

	err = repo.UpdateFeatureRunMemories(ctx, run, []any{json.RawMessage(raw)})
	if wantErr != nil {
		wantRefused(t, err, "memories[0]", raw)
	} else {
		if err != nil {
			t.Fatalf("memory %q (canonical %q) refused: %v", raw, want, err)
		}
		got, err := repo.GetFeatureRun(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(got.Memories, &elems); err != nil || len(elems) != 1 {
			t.Fatalf("memories %q: want one element (%v)", got.Memories, err)
		}
		checkReadBack(t, want, elems[0], sqlite)
	}

	storable := utf8.ValidString(s) && !strings.ContainsRune(s, 0)
	phase = newPhase()
	err = repo.PassPhaseResult(ctx, phase, map[string]any{s: []any{s, json.RawMessage(`"\ufffd"`)}})
	if !storable {
		wantRefused(t, err, "output", []byte(s))
		return
	}
	if err != nil {
		t.Fatalf("string %q refused: %v", s, err)
	}
	got, err := repo.GetPhaseResult(ctx, phase)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string][]string
	if err := json.Unmarshal(got.Output, &back); err != nil {
		t.Fatalf("string %q stored as %q: %v", s, got.Output, err)
	}
	if len(back) != 1 || len(back[s]) != 2 || back[s][0] != s || back[s][1] != "\ufffd" {
		t.Fatalf("string %q stored as %q", s, got.Output)
	}
}

// checkReadBack checks JSON read back from the database against the
// canonical form of what was written.
func checkReadBack(t *testing.T, want, got []byte, sqlite bool) {
	t.Helper()
	var floats any
	if err := json.Unmarshal(got, &floats); err != nil {
		t.Fatalf("encoding/json cannot decode %.100q, stored for %.100q, with float64 numbers: %v", got, want, err)
	}
	dec := json.NewDecoder(bytes.NewReader(got))
	dec.UseNumber()
	var numbers any
	if err := dec.Decode(&numbers); err != nil {
		t.Fatal(err)
	}
	if n, ok := zeroedNumber(numbers); ok {
		t.Fatalf("stored %.100q for %.100q: nonzero %.40s decodes into float64 as 0", got, want, n)
	}
	canonical, err := canonjson.Canonicalize(got)
	if err != nil || !bytes.Equal(canonical, want) {
		t.Fatalf("stored %.100q for %.100q: canonical form %.100q (%v)", got, want, canonical, err)
	}
	if limit := canonjson.ExpansionFactor*len(want) + canonjson.ExpansionSlack; len(got) > limit {
		t.Fatalf("stored %d bytes for %d canonical, over %d", len(got), len(want), limit)
	}
	if sqlite && !bytes.Equal(got, want) {
		t.Fatalf("SQLite stored %.100q for canonical %.100q", got, want)
	}
}

// zeroedNumber returns a nonzero number of v that encoding/json decodes
// into a float64 as zero, if there is one.
func zeroedNumber(v any) (json.Number, bool) {
	switch v := v.(type) {
	case json.Number:
		f, _ := strconv.ParseFloat(string(v), 64)
		nonzero := strings.ContainsAny(strings.Split(strings.ToLower(string(v)), "e")[0], "123456789")
		return v, nonzero && f == 0
	case []any:
		for _, e := range v {
			if n, ok := zeroedNumber(e); ok {
				return n, true
			}
		}
	case map[string]any:
		for _, e := range v {
			if n, ok := zeroedNumber(e); ok {
				return n, true
			}
		}
	}
	return "", false
}

// wantRefused checks that err refuses input as invalid, naming field.
func wantRefused(t *testing.T, err error, field string, input []byte) {
	t.Helper()
	var ierr *repository.InputError
	if !errors.Is(err, repository.ErrInvalidInput) || !errors.As(err, &ierr) || ierr.Field != field {
		t.Fatalf("%.100q: got %v, want ErrInvalidInput naming %s", input, err, field)
	}
}

// readStoredJSONCorpus reads FuzzStoredJSON's committed corpus, if any, in
// the "go test fuzz v1" format.
func readStoredJSONCorpus(t *testing.T) map[string]storedJSONSeed {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", "FuzzStoredJSON")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatalf("read corpus: %v", err)
	}
	corpus := map[string]storedJSONSeed{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		var args []string
		for sc.Scan() {
			args = append(args, sc.Text())
		}
		if len(args) != 3 || args[0] != "go test fuzz v1" {
			t.Fatalf("%s: want a go test fuzz v1 file of two arguments", e.Name())
		}
		raw, ok1 := unquoteArg(args[1], "[]byte(")
		s, ok2 := unquoteArg(args[2], "string(")
		if !ok1 || !ok2 {
			t.Fatalf("%s: want []byte and string arguments", e.Name())
		}
		corpus[e.Name()] = storedJSONSeed{[]byte(raw), s}
	}
	return corpus
}

func unquoteArg(line, prefix string) (string, bool) {
	arg, ok := strings.CutPrefix(line, prefix)
	arg, ok2 := strings.CutSuffix(arg, ")")
	s, err := strconv.Unquote(arg)
	return s, ok && ok2 && err == nil
}
