package repository

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/canonjson"
)

// encodeSetTwice is encodeSet as it was: each value marshalled, then the
// array of the distinct ones parsed again by Canonicalize to check the
// limits of the sum.
func encodeSetTwice(field string, vs []any) (jsonValue, error) {
	var buf bytes.Buffer
	buf.WriteByte('[')
	seen := make(map[string]struct{}, len(vs))
	for i, v := range vs {
		b, err := canonjson.Marshal(v)
		if err != nil {
			return nil, jsonInputError(field+"["+strconv.Itoa(i)+"]", err)
		}
		if _, dup := seen[string(b)]; dup {
			continue
		}
		seen[string(b)] = struct{}{}
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		buf.Write(b)
		if buf.Len() > canonjson.MaxBytes {
			return nil, &InputError{Field: field, Reason: "larger than " + strconv.Itoa(canonjson.MaxBytes) + " bytes"}
		}
	}
	buf.WriteByte(']')
	out, err := canonjson.Canonicalize(buf.Bytes())
	if err != nil {
		return nil, jsonInputError(field, err)
	}
	return out, nil
}

// requireSameSet checks that encodeSet returns for vs what encodeSetTwice
// returns: the same array, or an *InputError on the same field for the
// same reason. It reports whether vs was accepted.
func requireSameSet(t *testing.T, vs []any, msg string) bool {
	t.Helper()
	want, wantErr := encodeSetTwice("memories", vs)
	got, err := encodeSet("memories", vs)
	if wantErr != nil {
		var want, got *InputError
		require.ErrorAs(t, wantErr, &want, "%s: %v", msg, wantErr)
		require.ErrorAs(t, err, &got, "%s: encodeSet returns %v, not the double pass's %v", msg, err, wantErr)
		assert.Equal(t, *want, *got, "%s", msg)
		return false
	}
	require.NoError(t, err, "%s", msg)
	require.Equal(t, string(want), string(got), "%s", msg)
	return true
}

// TestEncodeSetAsTwice checks that encodeSet, which checks the array's
// limits from what canonjson learned of each value, refuses exactly what
// parsing the array again refused, on the same field for the same reason:
// over random memories near the expansion bound, with duplicates in
// other spellings and values refused alone, and at the array's size and
// depth limits.
func TestEncodeSetAsTwice(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	numbers := []any{
		json.RawMessage("1e300"), 1e300, json.RawMessage("1.0e300"), json.RawMessage("-1e-300"), 5e-324,
		math.MaxFloat64, json.RawMessage("1e21"), 1e20, 123, json.RawMessage("123.0"), 0.5,
	}
	element := func() any {
		switch rng.IntN(10) {
		case 0:
			return strings.Repeat("x", rng.IntN(2000))
		case 1:
			return map[string]any{"n": numbers[rng.IntN(len(numbers))], "m": []any{numbers[rng.IntN(len(numbers))]}}
		case 2:
			if rng.IntN(20) == 0 {
				return math.NaN() // refused alone
			}
		}
		return numbers[rng.IntN(len(numbers))]
	}
	trials := 2000
	if testing.Short() {
		trials = 200
	}
	accepted, refused := 0, 0
	for trial := range trials {
		var vs []any
		for range rng.IntN(120) {
			vs = append(vs, element())
		}
		if requireSameSet(t, vs, fmt.Sprintf("trial %d", trial)) {
			accepted++
		} else {
			refused++
		}
	}
	t.Logf("%d accepted, %d refused", accepted, refused)
	assert.Greater(t, accepted, trials/5)
	assert.Greater(t, refused, trials/5)

	// Over MaxBytes once in the array, before a value refused alone,
	// and just under it.
	big := strings.Repeat("y", canonjson.MaxBytes/2)
	for _, n := range []int{0, 1, 2, 3, 4} {
		vs := []any{big, strings.Repeat("z", canonjson.MaxBytes/2-8+n), math.NaN()}
		requireSameSet(t, vs, fmt.Sprintf("two halves and %d", n))
		requireSameSet(t, vs[:2], fmt.Sprintf("two halves and %d, alone", n))
	}

	// As deep as canonjson accepts alone, but one level deeper in the
	// array.
	for _, depth := range []int{canonjson.MaxDepth - 1, canonjson.MaxDepth} {
		deep := any(1)
		for range depth {
			deep = []any{deep}
		}
		assert.Equal(t, depth < canonjson.MaxDepth, requireSameSet(t, []any{"first", deep}, fmt.Sprintf("depth %d", depth)))
	}
}

// BenchmarkEncodeSet measures the encoding of a run's memories.
func BenchmarkEncodeSet(b *testing.B) {
	one := []any{"goal: ship it"}
	many := make([]any, 50)
	for i := range many {
		many[i] = map[string]any{"fact": fmt.Sprintf("learned %d", i), "n": i}
	}
	for _, c := range []struct {
		name string
		vs   []any
	}{{"values=1", one}, {"values=50", many}} {
		for _, f := range []struct {
			name   string
			encode func(string, []any) (jsonValue, error)
		}{{"once", encodeSet}, {"twice", encodeSetTwice}} {
			b.Run(c.name+"/pass="+f.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := f.encode("memories", c.vs); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
