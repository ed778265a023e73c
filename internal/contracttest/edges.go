package contracttest

import (
	"encoding/json"
	"math"
	"math/big"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/canonjson"
	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// jsonArg is one JSON argument of the contract's writes: store writes v
// through it on fresh rows and returns v's JSON as the getter reads it
// back. Arguments stored inside an array (memories, steps) return the
// element.
type jsonArg struct {
	name  string
	store func(e *env, v any) ([]byte, error)
}

// jsonArgs returns every JSON argument of the contract.
func jsonArgs() []jsonArg {
	element := func(t *testing.T, array []byte, i int) []byte {
		t.Helper()
		var elems []json.RawMessage
		require.NoError(t, json.Unmarshal(array, &elems), "%s", array)
		require.Greater(t, len(elems), i, "%s", array)
		return elems[i]
	}
	return []jsonArg{
		{"NewFeatureRun.Metadata", func(e *env, v any) ([]byte, error) {
			run, err := e.repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{Phase: "p", Metadata: v})
			if err != nil {
				return nil, err
			}
			got, err := e.repo.GetFeatureRun(e.ctx, run)
			require.NoError(e.t, err)
			return got.Metadata, nil
		}},
		{"NewFeatureRun.Memories", func(e *env, v any) ([]byte, error) {
			run, err := e.repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{Phase: "p", Memories: []any{"first", v}})
			if err != nil {
				return nil, err
			}
			got, err := e.repo.GetFeatureRun(e.ctx, run)
			require.NoError(e.t, err)
			return element(e.t, got.Memories, 1), nil
		}},
		// The append runs each database's own JSON functions over the
		// values: SQLite's json_each and json(), PostgreSQL's jsonb.
		{"memories", func(e *env, v any) ([]byte, error) {
			run := e.newRun()
			if err := e.repo.UpdateFeatureRunMemories(e.ctx, run, []any{"first", v}); err != nil {
				return nil, err
			}
			got, err := e.repo.GetFeatureRun(e.ctx, run)
			require.NoError(e.t, err)
			return element(e.t, got.Memories, 1), nil
		}},
		{"NewSandbox.Metadata", func(e *env, v any) ([]byte, error) {
			id := "sbx-" + uuid.NewString()
			if err := e.repo.CreateSandboxRecord(e.ctx, repository.NewSandbox{ID: id, FeatureRunID: e.newRun(), Metadata: v}); err != nil {
				return nil, err
			}
			got, err := e.repo.GetSandbox(e.ctx, id)
			require.NoError(e.t, err)
			return got.Metadata, nil
		}},
		{"output", func(e *env, v any) ([]byte, error) {
			phase := e.newPhase(e.newRun())
			if err := e.repo.PassPhaseResult(e.ctx, phase, v); err != nil {
				return nil, err
			}
			got, err := e.repo.GetPhaseResult(e.ctx, phase)
			require.NoError(e.t, err)
			return got.Output, nil
		}},
		{"NewAgentInvocation.Input", func(e *env, v any) ([]byte, error) {
			id, err := e.repo.CreateAgentInvocation(e.ctx, repository.NewAgentInvocation{FeatureRunID: e.newRun(), Agent: "a", Input: v})
			if err != nil {
				return nil, err
			}
			got, err := e.repo.GetAgentInvocation(e.ctx, id)
			require.NoError(e.t, err)
			return got.Input, nil
		}},
		{"InvocationResult.Steps", func(e *env, v any) ([]byte, error) {
			id := e.newInvocation(e.newRun())
			if err := e.repo.CompleteAgentInvocation(e.ctx, id, repository.InvocationResult{Steps: []any{v}}); err != nil {
				return nil, err
			}
			got, err := e.repo.GetAgentInvocation(e.ctx, id)
			require.NoError(e.t, err)
			return element(e.t, got.Steps, 0), nil
		}},
		{"InvocationResult.Output", func(e *env, v any) ([]byte, error) {
			id := e.newInvocation(e.newRun())
			if err := e.repo.CompleteAgentInvocation(e.ctx, id, repository.InvocationResult{Output: v}); err != nil {
				return nil, err
			}
			got, err := e.repo.GetAgentInvocation(e.ctx, id)
			require.NoError(e.t, err)
			return got.Output, nil
		}},
		{"NewCTAEvent.RequestData", func(e *env, v any) ([]byte, error) {
			id := "cta-" + uuid.NewString()
			if err := e.repo.CreateCTAEvent(e.ctx, repository.NewCTAEvent{ID: id, FeatureRunID: e.newRun(), RequestData: v}); err != nil {
				return nil, err
			}
			got, err := e.repo.GetCTAEvent(e.ctx, id)
			require.NoError(e.t, err)
			return got.RequestData, nil
		}},
		{"responseData", func(e *env, v any) ([]byte, error) {
			id := e.newCTA(e.newRun())
			if err := e.repo.CompleteCTAEvent(e.ctx, id, v); err != nil {
				return nil, err
			}
			got, err := e.repo.GetCTAEvent(e.ctx, id)
			require.NoError(e.t, err)
			return got.ResponseData, nil
		}},
	}
}

// limitNumbers are numbers at the edges of what is accepted, as JSON text,
// with the float64 encoding/json decodes each into.
func limitNumbers() []struct {
	text string
	f    float64
} {
	two := big.NewInt(2)
	// Just below 2^1024 - 2^970, the magnitude that rounds to infinity.
	belowInf := new(big.Int).Sub(new(big.Int).Exp(two, big.NewInt(1024), nil), new(big.Int).Exp(two, big.NewInt(970), nil))
	belowInf.Sub(belowInf, big.NewInt(1))
	fraction := strings.Repeat("1234567890", canonjson.MaxFractionDigits/10) + "123"
	return []struct {
		text string
		f    float64
	}{
		{"1.7976931348623157e308", math.MaxFloat64},
		{"-1.7976931348623157e308", -math.MaxFloat64},
		{belowInf.String(), math.MaxFloat64},
		{"5e-324", math.SmallestNonzeroFloat64},
		// Just above 2^-1075, the magnitude that rounds to zero.
		{"-2.4703282292062328e-324", -math.SmallestNonzeroFloat64},
		{"12345678901234567890123", 12345678901234567890123},
		{"0." + fraction, 0.1234567890123456789},
	}
}

// atExpansionLimit is a value whose text on PostgreSQL, with its 15
// numbers written out in full (295 bytes longer each) and a space after
// each of its 15 commas, is exactly ExpansionFactor times its canonical
// length plus ExpansionSlack; with pad 234, it is one byte past it.
func atExpansionLimit(pad int) json.RawMessage {
	return json.RawMessage(`["` + strings.Repeat("x", pad) + `"` + strings.Repeat(",1e300", 15) + "]")
}

// Edges tests JSON arguments at the edges of what is accepted: numbers at
// the ends of the float64 range, with the longest fraction, and a value at
// the bound on PostgreSQL's text of it; and U+FFFD, raw and escaped. Each
// must be stored as given by every JSON argument and read back by
// encoding/json, numbers decoding into float64. Their refused neighbours
// are in BadInput.
func Edges(t *testing.T, open dbtest.Opener) {
	t.Run("NumbersAtTheLimits", func(t *testing.T) {
		e := setup(t, open)
		for _, n := range limitNumbers() {
			for _, arg := range jsonArgs() {
				for _, v := range []json.RawMessage{json.RawMessage(n.text), json.RawMessage(`{"n":` + n.text + `}`)} {
					got := e.roundTrip(arg, v)
					var back any
					require.NoError(t, json.Unmarshal(got, &back), "%s: encoding/json decodes %.60s", arg.name, got)
					if f, ok := back.(float64); ok {
						// Bit for bit: the float64 nearest the number.
						assert.Equal(t, math.Float64bits(n.f), math.Float64bits(f), "%s: %.60s", arg.name, n.text)
					} else {
						assert.Equal(t, map[string]any{"n": n.f}, back, "%s: %.60s", arg.name, n.text)
					}
				}
			}
		}
	})

	t.Run("ExpansionAtTheLimit", func(t *testing.T) {
		e := setup(t, open)
		// Numbers that PostgreSQL writes longer, in each of its forms
		// (integer, fraction below 1, both sides of the point), and
		// shorter than their canonical exponent form.
		for _, numbers := range [][]string{
			slices.Repeat([]string{"1e300"}, 15),
			slices.Repeat([]string{"-1e-300"}, 15),
			slices.Repeat([]string{"5e-324"}, 14),
			slices.Repeat([]string{"1.7976931348623157e308"}, 16),
			append([]string{"1.2345678901234567890123e21", "-1.2345678901234567890123e21"}, slices.Repeat([]string{"1e100"}, 50)...),
		} {
			// The shortest padding canonjson accepts puts the value exactly
			// at the bound: one byte less is refused.
			value := func(pad int) json.RawMessage {
				return json.RawMessage(`["` + strings.Repeat("x", pad) + `",` + strings.Join(numbers, ",") + "]")
			}
			pad := sort.Search(1<<20, func(pad int) bool {
				_, err := canonjson.Canonicalize(value(pad))
				return err == nil
			})
			require.Positive(t, pad, "%s…: over the bound without padding", numbers[0])
			canonical, err := canonjson.Canonicalize(value(pad))
			require.NoError(t, err)
			for _, arg := range jsonArgs() {
				got := e.roundTrip(arg, value(pad))
				if e.db.Dialector.Name() == "postgres" {
					assert.Len(t, got, canonjson.ExpansionFactor*len(canonical)+canonjson.ExpansionSlack,
						"%s: %s…: PostgreSQL writes the numbers out in full, exactly at the bound", arg.name, numbers[0])
				} else {
					assert.Equal(t, string(canonical), string(got), "%s: SQLite and MariaDB store the canonical text", arg.name)
				}
				if arg.name == "InvocationResult.Steps" {
					continue // the bound is on the steps' array, 2 bytes longer
				}
				_, err := arg.store(e, value(pad-1))
				var ierr *repository.InputError
				require.ErrorAs(t, err, &ierr, "%s: %s…: one byte past the bound", arg.name, numbers[0])
				assert.Equal(t, arg.name, strings.TrimSuffix(ierr.Field, "[1]"))
			}
			if numbers[0] == "1e300" {
				assert.Equal(t, 235, pad, "atExpansionLimit is at the bound")
			}
		}
	})

	t.Run("ReplacementCharacter", func(t *testing.T) {
		e := setup(t, open)
		const r = "\ufffd"
		values := []struct {
			v    any
			want string // JSON, with U+FFFD raw
		}{
			{r, `"` + r + `"`},
			{json.RawMessage(`"\ufffd"`), `"` + r + `"`},
			{json.RawMessage(`"a\uFFFDb"`), `"a` + r + `b"`},
			{json.RawMessage(`"` + r + `"`), `"` + r + `"`},
			{map[string]any{r: []any{r, json.RawMessage(`{"\ufffd":"\ufffd"}`)}}, `{"` + r + `":["` + r + `",{"` + r + `":"` + r + `"}]}`},
			{struct {
				Text string
				Raw  json.RawMessage
				Sub  textValue
			}{"a" + r, json.RawMessage(`"\ufffd"`), textValue(r)}, `{"Text":"a` + r + `","Raw":"` + r + `","Sub":"` + r + `"}`},
			{jsonText(`["\ufffd"]`), `["` + r + `"]`},
		}
		for _, c := range values {
			for _, arg := range jsonArgs() {
				got := e.roundTrip(arg, c.v)
				var back, want any
				require.NoError(t, json.Unmarshal(got, &back))
				require.NoError(t, json.Unmarshal([]byte(c.want), &want))
				assert.Equal(t, want, back, "%s: %#v", arg.name, c.v)
			}
		}

		// The spellings are one value: the append stores it once.
		run := e.newRun()
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, []any{r, json.RawMessage(`"\ufffd"`), json.RawMessage(`"\uFFFD"`)}))
		require.NoError(t, e.repo.UpdateFeatureRunMemories(e.ctx, run, []any{json.RawMessage(`"\ufffd"`)}))
		got, err := e.repo.GetFeatureRun(e.ctx, run)
		require.NoError(t, err)
		var mem []string
		require.NoError(t, json.Unmarshal(got.Memories, &mem))
		assert.Equal(t, []string{r}, mem)

		// Names and messages are text: U+FFFD is valid UTF-8 there too.
		named, err := e.repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{Phase: r})
		require.NoError(t, err)
		require.NoError(t, e.repo.FailFeatureRunWithError(e.ctx, named, "bad "+r))
		require.NoError(t, e.repo.CreateSandboxRecord(e.ctx, repository.NewSandbox{ID: "sbx-" + r, FeatureRunID: named, Provider: r}))
		run2, err := e.repo.GetFeatureRun(e.ctx, named)
		require.NoError(t, err)
		assert.Equal(t, r, run2.Phase)
		assert.Equal(t, models.RunFailed, run2.Status)
		require.NotNil(t, run2.Error)
		assert.Equal(t, "bad "+r, *run2.Error)
		sandbox, err := e.repo.GetSandbox(e.ctx, "sbx-"+r)
		require.NoError(t, err)
		assert.Equal(t, r, sandbox.Provider)
	})
}

// roundTrip stores v through arg and returns what the database gives back,
// after checking that it is JSON-equal to v, with every digit of its
// numbers, and within canonjson's bound on its length.
func (e *env) roundTrip(arg jsonArg, v any) []byte {
	e.t.Helper()
	want, err := canonjson.Marshal(v)
	require.NoError(e.t, err, "%s: %#v", arg.name, v)
	got, err := arg.store(e, v)
	require.NoError(e.t, err, "%s: %.80s", arg.name, want)
	canonical, err := canonjson.Canonicalize(got)
	require.NoError(e.t, err, "%s: stored %.80s", arg.name, got)
	assert.Equal(e.t, string(want), string(canonical), "%s: stored JSON-equal", arg.name)
	assert.LessOrEqual(e.t, len(got), canonjson.ExpansionFactor*len(want)+canonjson.ExpansionSlack, "%s", arg.name)
	return got
}

// textValue is an encoding.TextMarshaler: encoding/json encodes its text
// as a string. It is no string itself, so only its text tells whether
// encoding/json replaces bytes of it.
type textValue []byte

// MarshalText returns t itself.
func (t textValue) MarshalText() ([]byte, error) { return t, nil }

// jsonText is a json.Marshaler whose output is its own text.
type jsonText string

// MarshalJSON returns j itself.
func (j jsonText) MarshalJSON() ([]byte, error) { return []byte(j), nil }
