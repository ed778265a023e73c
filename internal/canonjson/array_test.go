package canonjson

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// doublePass is what Array replaces: the canonical texts of elems joined
// into an array, which Canonicalize parses again to check its limits.
func doublePass(elems []Value) ([]byte, error) {
	texts := make([]string, len(elems))
	for i, e := range elems {
		texts[i] = string(e.JSON)
	}
	return Canonicalize([]byte("[" + strings.Join(texts, ",") + "]"))
}

// singlePass is the array of elems as Array writes and checks it.
func singlePass(elems []Value) ([]byte, error) {
	var a Array
	for _, e := range elems {
		a.Append(e)
	}
	return a.Close()
}

// requireSameAsDoublePass checks that Array accepts exactly the arrays of
// elems that the double pass accepts, with the same text, and refuses the
// others with the same error, offset included. It reports whether the
// array was accepted.
func requireSameAsDoublePass(t *testing.T, elems []Value, msg string) bool {
	t.Helper()
	want, wantErr := doublePass(elems)
	got, err := singlePass(elems)
	if wantErr != nil {
		require.Error(t, err, "%s: the double pass refuses it: %v", msg, wantErr)
		assert.Equal(t, wantErr, err, "%s", msg)
		return false
	}
	require.NoError(t, err, "%s", msg)
	require.Equal(t, string(want), string(got), "%s", msg)
	return true
}

// value returns the Value of JSON text, which must be accepted alone.
func value(t *testing.T, text string) Value {
	t.Helper()
	v, err := MarshalValue(json.RawMessage(text))
	require.NoError(t, err, "%.80s", text)
	return v
}

// randomElement returns the JSON text of an element of an array near the
// limits: mostly numbers that PostgreSQL writes out far longer than their
// canonical form (or shorter), some nested in arrays and objects, whose
// commas and colons jsonb writes with a space, and strings that pad.
func randomElement(rng *rand.Rand) string {
	numbers := []string{
		"1e300", "-1e-300", "5e-324", "1.7976931348623157e308", "-2.4703282292062328e-324",
		"1e21", "1e20", "1e100", "0.000001", "1e-7", "123", "0", "-12345678901234567890123.5",
	}
	randomNumber := func() string {
		if rng.IntN(2) == 0 {
			return fmt.Sprintf("%d.%de%d", rng.IntN(20)-10, rng.IntN(1000), rng.IntN(600)-300)
		}
		return numbers[rng.IntN(len(numbers))]
	}
	switch rng.IntN(8) {
	case 0:
		return `"` + strings.Repeat("x", rng.IntN(1000)) + `"`
	case 1:
		var b strings.Builder
		b.WriteByte('[')
		for i := range rng.IntN(6) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(randomNumber())
		}
		b.WriteByte(']')
		return b.String()
	case 2:
		// Keys out of order and repeated: the object is reordered and
		// loses its duplicates, and their growth with them.
		var b strings.Builder
		b.WriteByte('{')
		for i := range rng.IntN(5) {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"%c":[%s,%s]`, 'a'+rng.IntN(4), randomNumber(), randomNumber())
		}
		b.WriteByte('}')
		return b.String()
	}
	return randomNumber()
}

// TestArrayRefusesAsDoublePass checks, over random arrays of values near
// the expansion bound, that Array accepts and refuses exactly what
// Canonicalize of the whole array does: as they come, at the shortest
// padding Canonicalize accepts, where one byte less is refused, and at
// random paddings around it.
func TestArrayRefusesAsDoublePass(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	trials := 600
	if testing.Short() {
		trials = 100
	}
	accepted, refused := 0, 0
	for trial := range trials {
		var elems []Value
		for range rng.IntN(100) {
			text := randomElement(rng)
			if v, err := MarshalValue(json.RawMessage(text)); err == nil {
				elems = append(elems, v)
			}
		}
		requireSameAsDoublePass(t, elems, fmt.Sprintf("trial %d", trial))

		// A string that pads the array, in a random place: the longer
		// it is, the more the bound allows.
		at := rng.IntN(len(elems) + 1)
		padded := func(n int) []Value {
			out := append([]Value(nil), elems[:at]...)
			out = append(out, value(t, `"`+strings.Repeat("p", n)+`"`))
			return append(out, elems[at:]...)
		}
		pad := sort.Search(1<<17, func(n int) bool {
			_, err := doublePass(padded(n))
			return err == nil
		})
		require.Less(t, pad, 1<<17, "trial %d: no padding fits", trial)
		msg := fmt.Sprintf("trial %d, padding %d", trial, pad)
		assert.True(t, requireSameAsDoublePass(t, padded(pad), msg))
		if pad > 0 {
			assert.False(t, requireSameAsDoublePass(t, padded(pad-1), msg+" less one"))
		}
		if pad == 0 {
			continue // under the bound without padding
		}
		near := max(0, pad+rng.IntN(201)-100)
		if requireSameAsDoublePass(t, padded(near), fmt.Sprintf("trial %d, padding %d", trial, near)) {
			accepted++
		} else {
			refused++
		}
	}
	// Both outcomes are common enough for the comparison to mean something.
	t.Logf("around the bound: %d accepted, %d refused", accepted, refused)
	assert.Greater(t, accepted, trials/5)
	assert.Greater(t, refused, trials/5)
}

// TestArrayLimits checks Array at MaxBytes and MaxDepth, and at the
// expansion bound of a known array, against the double pass.
func TestArrayLimits(t *testing.T) {
	t.Run("MaxBytes", func(t *testing.T) {
		// ["x…x","y"] is n+8 bytes long.
		for _, n := range []int{MaxBytes - 9, MaxBytes - 8, MaxBytes - 7} {
			elems := []Value{value(t, `"`+strings.Repeat("x", n)+`"`), value(t, `"y"`)}
			assert.Equal(t, n <= MaxBytes-8, requireSameAsDoublePass(t, elems, fmt.Sprint(n)))
		}
		_, err := singlePass([]Value{value(t, `"`+strings.Repeat("x", MaxBytes-7)+`"`), value(t, `"y"`)})
		assert.EqualError(t, err, fmt.Sprintf("larger than %d bytes", MaxBytes))
	})

	t.Run("MaxDepth", func(t *testing.T) {
		nested := func(depth int) string {
			return strings.Repeat("[", depth) + "1" + strings.Repeat("]", depth)
		}
		// An element as deep as MaxDepth is accepted alone, but not in
		// an array, one level deeper.
		for _, depth := range []int{1, 2, MaxDepth - 1, MaxDepth} {
			for _, first := range []string{`"first"`, `{"b":[1],"a":2}`} {
				for _, deep := range []string{nested(depth), `{"n":` + nested(depth-1) + `}`} {
					elems := []Value{value(t, first), value(t, deep), value(t, "2")}
					msg := fmt.Sprintf("depth %d after %s", depth, first)
					assert.Equal(t, depth < MaxDepth, requireSameAsDoublePass(t, elems, msg), "%s", msg)
				}
			}
		}
		_, err := singlePass([]Value{value(t, `"first"`), value(t, nested(MaxDepth))})
		assert.EqualError(t, err, fmt.Sprintf("nested deeper than %d levels at byte %d", MaxDepth, 9+MaxDepth-1))
	})

	t.Run("Expansion", func(t *testing.T) {
		// 15 numbers 1e300, each 295 bytes longer on PostgreSQL, 15
		// commas and a string of pad bytes (see contracttest's
		// atExpansionLimit): at the bound with pad 235.
		for _, pad := range []int{234, 235} {
			elems := []Value{value(t, `"`+strings.Repeat("x", pad)+`"`)}
			for range 15 {
				elems = append(elems, value(t, "1e300"))
			}
			assert.Equal(t, pad == 235, requireSameAsDoublePass(t, elems, fmt.Sprint(pad)))
		}
	})

	t.Run("Empty", func(t *testing.T) {
		requireSameAsDoublePass(t, nil, "no element")
		got, err := singlePass(nil)
		require.NoError(t, err)
		assert.Equal(t, "[]", string(got))
	})
}

// TestMarshalValue checks that a Value knows what Canonicalize of an
// array holding it counts of it: its growth and depth.
func TestMarshalValue(t *testing.T) {
	for _, c := range []struct {
		text          string
		growth, depth int
	}{
		{`"a"`, 0, 0},
		// 1e+300 written out is 301 bytes, 5e-324 326.
		{`1e300`, 295, 0},
		{`5e-324`, 320, 0},
		{`[1,2,3]`, 2, 1},
		// 1e+21 written out is 22 bytes; three colons and a comma.
		{`{"b":[1e21],"a":{"c":null}}`, 17 + 3 + 1, 2},
		// The duplicate and its growth are dropped.
		{`{"a":1e300,"a":1}`, 1, 1},
		{`{"a":1,"a":1e300}`, 295 + 1, 1},
	} {
		v := value(t, c.text)
		assert.Equal(t, c.growth, v.growth, c.text)
		assert.Equal(t, c.depth, v.depth, c.text)
		want, err := Canonicalize([]byte(c.text))
		require.NoError(t, err)
		assert.Equal(t, string(want), string(v.JSON), c.text)
	}
}

// BenchmarkSet measures the encoding of 50 memories into their array:
// each value marshalled, then the array written and checked, once from
// the values (Array), once by parsing the array again (Canonicalize).
func BenchmarkSet(b *testing.B) {
	values := make([]any, 50)
	for i := range values {
		values[i] = map[string]any{"fact": fmt.Sprintf("learned %d", i), "n": i, "tags": []any{"a", "b"}}
	}
	b.Run("single", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var a Array
			for _, v := range values {
				val, err := MarshalValue(v)
				if err != nil {
					b.Fatal(err)
				}
				a.Append(val)
			}
			if _, err := a.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("double", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf := []byte{'['}
			for _, v := range values {
				c, err := Marshal(v)
				if err != nil {
					b.Fatal(err)
				}
				if len(buf) > 1 {
					buf = append(buf, ',')
				}
				buf = append(buf, c...)
			}
			if _, err := Canonicalize(append(buf, ']')); err != nil {
				b.Fatal(err)
			}
		}
	})
}
