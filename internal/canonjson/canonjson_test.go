package canonjson

import (
	"encoding/json"
	"math"
	"math/big"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCanonicalize(t *testing.T) {
	cases := []struct{ in, want string }{
		{`null`, `null`},
		{` true `, `true`},
		{`false`, `false`},
		{`{"b": 1, "a": [1, 2, {"d": null, "c": "x"}]}`, `{"a":[1,2,{"c":"x","d":null}],"b":1}`},
		{`{"a":1,"a":2}`, `{"a":2}`},
		{`{"b":1,"a":1,"b":3}`, `{"a":1,"b":3}`},
		{`{}`, `{}`},
		{`[ ]`, `[]`},
		{`1.0`, `1`},
		{`1e0`, `1`},
		{`-0`, `0`},
		{`-0.0e5`, `0`},
		{`0.10`, `0.1`},
		{`1.5e1`, `15`},
		{`12.5e-3`, `0.0125`},
		{`1e21`, `1e+21`},
		{`1e20`, `100000000000000000000`},
		{`123456789012345678901234567890`, `1.2345678901234567890123456789e+29`},
		{`0.000001`, `0.000001`},
		{`0.0000001`, `1e-7`},
		{`-2.50E+2`, `-250`},
		{`"a\/b\u0041\n\u00e9\ud83d\ude00<>&"`, "\"a/bA\\n\u00e9\U0001F600<>&\""},
		{`"\u001f\t"`, `"\u001f\t"`},
		// U+FFFD is a character: escaped in either case, or raw, it is kept.
		{`"\ufffd"`, "\"\ufffd\""},
		{`"a\uFFFDb"`, "\"a\ufffdb\""},
		{"\"\ufffd\"", "\"\ufffd\""},
		{`{"\ufffd":"\ufffd"}`, "{\"\ufffd\":\"\ufffd\"}"},
		// The ends of float64's range, and big integers kept exact.
		{`1.7976931348623157e308`, `1.7976931348623157e+308`},
		{`-1.7976931348623157e308`, `-1.7976931348623157e+308`},
		{`5e-324`, `5e-324`},
		{`2.4703282292062328e-324`, `2.4703282292062328e-324`},
		{`12345678901234567890123`, `1.2345678901234567890123e+22`},
		{`-12345678901234567890123.5`, `-1.23456789012345678901235e+22`},
	}
	for _, c := range cases {
		got, err := Canonicalize([]byte(c.in))
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, string(got), c.in)
		again, err := Canonicalize(got)
		require.NoError(t, err)
		assert.Equal(t, string(got), string(again), "canonical form is a fixed point")
	}
}

func TestCanonicalizeRejects(t *testing.T) {
	cases := map[string]string{
		`"a\u0000b"`:               "NUL",
		"\"a\xffb\"":               "invalid UTF-8",
		`"\ud800"`:                 "surrogate",
		`"\ud800\u0041"`:           "surrogate",
		`1e401`:                    "out of range",
		`1e-500`:                   "out of range",
		`1e309`:                    "beyond the largest float64",
		`1e399`:                    "beyond the largest float64",
		`-1e309`:                   "beyond the largest float64",
		`[1.7976931348623159e308]`: "beyond the largest float64",
		`1e-400`:                   "0 as a float64",
		`-2e-324`:                  "0 as a float64",
		`2.4703282292062327e-324`:  "0 as a float64",
		"0." + strings.Repeat("1", MaxFractionDigits+1): "more than 16383 digits after the decimal point",
		"1" + strings.Repeat("0", 309):                  "beyond the largest float64",
		`01`:                                            "invalid number",
		`1.`:                                            "invalid number",
		`[1,]`:                                          "invalid JSON value",
		`{"a" 1}`:                                       "expected :",
		`{"a":1`:                                        "unexpected end",
		`[1] 2`:                                         "after the value",
		`nul`:                                           "invalid JSON value",
		"\"a\nb\"":                                      "control character",
		`"\x"`:                                          "invalid escape",
		`"\u12"`:                                        "escape",
		strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1): "nested deeper",
	}
	for in, want := range cases {
		_, err := Canonicalize([]byte(in))
		var cerr *Error
		require.ErrorAs(t, err, &cerr, in)
		assert.Contains(t, cerr.Error(), want, in)
	}
	_, err := Canonicalize([]byte(strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)))
	require.NoError(t, err, "exactly MaxDepth levels are accepted")

	// A huge exponent cancelled by a long fraction must not be capped into
	// a wrong value.
	_, err = Canonicalize([]byte("0." + strings.Repeat("0", 999_999) + "1e10000000"))
	require.ErrorContains(t, err, "out of range")
	_, err = Canonicalize([]byte("1" + strings.Repeat("0", 999_999) + "e-10000000"))
	require.ErrorContains(t, err, "out of range")

	// The limit on fraction digits is PostgreSQL's, whatever the exponent.
	_, err = Canonicalize([]byte("0." + strings.Repeat("1", MaxFractionDigits)))
	require.NoError(t, err)
	_, err = Canonicalize([]byte("1." + strings.Repeat("1", MaxFractionDigits-1) + "e-1"))
	require.NoError(t, err)
	_, err = Canonicalize([]byte("1." + strings.Repeat("1", MaxFractionDigits-1) + "e-2"))
	require.ErrorContains(t, err, "more than 16383 digits")

	// The limit holds for the canonical output, not only the input.
	grows := "[" + strings.Repeat("1e20,", MaxBytes/5-1) + "1]"
	require.LessOrEqual(t, len(grows), MaxBytes)
	_, err = Canonicalize([]byte(grows))
	require.ErrorContains(t, err, "once canonical")

	// The 7,000,001 bytes of 1e+399, which PostgreSQL returned as
	// 402,000,000: out of range. Within range, 1e+308 is 303 bytes longer
	// written out, so as many are refused as too large once expanded.
	for _, n := range []string{"1e+399", "1e+308"} {
		big := "[" + strings.Repeat(n+",", 999_999) + n + "]"
		require.Len(t, big, 7_000_001)
		_, err = Canonicalize([]byte(big))
		require.Error(t, err, n)
	}
}

// TestFloat64Bounds checks the exact ends of the float64 range: a number
// is refused exactly when strconv.ParseFloat overflows or rounds it to 0,
// even with hundreds of digits.
func TestFloat64Bounds(t *testing.T) {
	// 2^-1075, half the smallest subnormal, is 5^1075 × 10^-1075 and rounds
	// to 0 (to even); anything above it rounds to 2^-1074.
	half := new(big.Int).Exp(big.NewInt(5), big.NewInt(1075), nil).String()
	tiny := func(digits string) string { return "0." + strings.Repeat("0", 1075-len(half)) + digits }
	below := half[:len(half)-1] + "4" + strings.Repeat("9", 20)
	// 2^1024 - 2^970, halfway between MaxFloat64 and 2^1024, rounds to
	// infinity (to even); anything below it rounds to MaxFloat64.
	edge := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 1024), new(big.Int).Lsh(big.NewInt(1), 970)).String()
	less := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 1024), new(big.Int).Lsh(big.NewInt(1), 970))
	less.Sub(less, big.NewInt(1))
	cases := []struct {
		in   string
		want float64 // 0: refused
	}{
		{tiny(half), 0},
		{tiny(half + "1"), math.SmallestNonzeroFloat64},
		{tiny(below), 0},
		{"-" + tiny(half+"000000001"), -math.SmallestNonzeroFloat64},
		{edge, 0},
		{edge + ".0000001", 0},
		{less.String(), math.MaxFloat64},
		{less.String() + ".999999999", math.MaxFloat64},
		{"-" + less.String(), -math.MaxFloat64},
	}
	for _, c := range cases {
		out, err := Canonicalize([]byte(c.in))
		if c.want == 0 {
			assert.ErrorContains(t, err, "out of range", c.in)
			continue
		}
		require.NoError(t, err, c.in)
		var f float64
		require.NoError(t, json.Unmarshal(out, &f), "encoding/json decodes %s", out)
		assert.Equal(t, math.Float64bits(c.want), math.Float64bits(f), "%s decodes to %g", c.in, c.want)
		assert.Equal(t, decimal(c.in), decimal(string(out)), "every digit is kept")
	}
}

// TestExpansion checks the bound on PostgreSQL's text of a value:
// 15 numbers 1e+300 grow by 295 bytes each and their 15 commas by one
// each (", "), which a 235-byte string brings to exactly twice the
// canonical form plus ExpansionSlack.
func TestExpansion(t *testing.T) {
	value := func(pad int) string {
		return `["` + strings.Repeat("x", pad) + `"` + strings.Repeat(",1e300", 15) + "]"
	}
	out, err := Canonicalize([]byte(value(235)))
	require.NoError(t, err)
	require.Equal(t, 2*len(out)+ExpansionSlack, len(out)+15*296, "at the limit")
	_, err = Canonicalize([]byte(value(234)))
	require.ErrorContains(t, err, "larger than 2 times its canonical")

	// Duplicate keys are dropped, and their numbers do not count.
	dup := `{"a":[` + strings.Repeat("1e300,", 100) + `1],"a":1}`
	out, err = Canonicalize([]byte(dup))
	require.NoError(t, err)
	assert.Equal(t, `{"a":1}`, string(out))

	// Alone, a number grows by at most 320 bytes, at the bottom of the range.
	out, err = Canonicalize([]byte("3e-324"))
	require.NoError(t, err)
	assert.Equal(t, "3e-324", string(out))
	// Big integers and long fractions do not grow at all.
	for _, n := range []string{"12345678901234567890123", "0." + strings.Repeat("7", MaxFractionDigits)} {
		many := "[" + strings.Repeat(n+",", 200) + n + "]"
		_, err = Canonicalize([]byte(many))
		require.NoError(t, err)
	}
}

func TestMarshal(t *testing.T) {
	got, err := Marshal(map[string]any{"z": 1.5, "a": []any{"<tag>", json.RawMessage(`{"y":1,"x":2}`)}})
	require.NoError(t, err)
	assert.Equal(t, `{"a":["<tag>",{"x":2,"y":1}],"z":1.5}`, string(got))

	got, err = Marshal("'; DROP TABLE feature_runs; --")
	require.NoError(t, err)
	assert.Equal(t, `"'; DROP TABLE feature_runs; --"`, string(got))

	got, err = Marshal("\ufffd is a valid rune")
	require.NoError(t, err, "a real U+FFFD is kept; only invalid bytes are refused")
	assert.Equal(t, "\"\ufffd is a valid rune\"", string(got))

	// The escape \ufffd in JSON text, json.RawMessage or a Marshaler's
	// output, is U+FFFD too, even beside Go strings that hold one raw.
	for _, v := range []any{
		json.RawMessage(`"\ufffd"`),
		json.RawMessage(`"\uFFFD"`),
		[]any{json.RawMessage(`"\ufffd"`), "\ufffd", map[string]any{"\ufffd": json.RawMessage(`"\ufffd"`)}},
		struct {
			S string
			R json.RawMessage
			M marshaler
			T text
		}{"\ufffd", json.RawMessage(`"\ufffd"`), marshaler(`"\ufffd"`), text("\ufffd")},
		map[text]marshaler{"\ufffd": `"\ufffd"`},
		[]any{json.RawMessage(`"\ufffd"`), byteText("\ufffd")},
		&addrMarshaler{`"\ufffd"`},
		[]addrMarshaler{{`"\ufffd"`}},
	} {
		got, err := Marshal(v)
		require.NoError(t, err, "%#v", v)
		var back any
		require.NoError(t, json.Unmarshal(got, &back))
		assert.Contains(t, string(got), "\ufffd", "%#v", v)
		assert.NotContains(t, string(got), `\u`, "%#v: canonical form has U+FFFD raw", v)
	}
	// An unaddressable value's pointer-receiver MarshalJSON is not called:
	// encoding/json encodes its fields, and their invalid bytes.
	_, err = Marshal([]any{json.RawMessage(`"\ufffd"`), addrMarshaler{"bad \xff"}})
	assert.ErrorContains(t, err, `$[1].S`)
	// The error names where the invalid string is.
	_, err = Marshal(map[string]any{"k": []any{json.RawMessage(`"\ufffd"`), "\xff"}})
	assert.ErrorContains(t, err, `Go string at $["k"][1] `)
	_, err = Marshal(map[string]any{"\xff": json.RawMessage(`"\ufffd"`)})
	assert.ErrorContains(t, err, `Go string at $["\xff"] `)
	got, err = Marshal([]any{json.RawMessage(`"\ufffd"`), addrMarshaler{"\ufffd"}})
	require.NoError(t, err)
	assert.Equal(t, "[\"\ufffd\",{\"S\":\"\ufffd\"}]", string(got))

	bad := []any{
		"bad \xc3\x28 utf8",
		map[string]any{"k\xff": 1},
		"nul \x00",
		math.NaN(),
		math.Inf(1),
		make(chan int),
		func() {},
		json.RawMessage("[\"\xff\"]"),
		json.RawMessage(`{"a":`),
		// Invalid bytes encoding/json replaces with \ufffd, beside an
		// escape \ufffd that is a real U+FFFD.
		[]any{json.RawMessage(`"\ufffd"`), "bad \xff"},
		map[string]any{"\xff": json.RawMessage(`"\ufffd"`)},
		map[string]any{"k": json.RawMessage(`"\ufffd"`), "v": []string{"ok", "\xc3\x28"}},
		struct {
			R json.RawMessage
			embedded
		}{json.RawMessage(`"\ufffd"`), embedded{"\xff"}},
		struct {
			R json.RawMessage
			*Embedded
		}{json.RawMessage(`"\ufffd"`), &Embedded{"\xff"}},
		struct {
			R json.RawMessage
			T text
		}{json.RawMessage(`"\ufffd"`), "\xff"},
		map[text]json.RawMessage{"\xff": json.RawMessage(`"\ufffd"`)},
		[]any{json.RawMessage(`"\ufffd"`), byteText("\xff")},
		map[string]any{"t": json.RawMessage(`"\ufffd"`), "p": &byteText{0xff}},
		struct {
			R json.RawMessage
			N int    `json:",string"`
			S string `json:",string"`
		}{json.RawMessage(`"\ufffd"`), 1, "\xff"},
		marshaler("\"\xff\""),
		// A number no float64 holds, through a Marshaler or json.Number.
		marshaler("1e309"),
		json.Number("1e-400"),
		strings.Repeat("x", MaxBytes),
	}
	for _, v := range bad {
		_, err := Marshal(v)
		var cerr *Error
		assert.ErrorAs(t, err, &cerr, "%T should be rejected", v)
	}

	// Unencoded fields may hold anything.
	got, err = Marshal(struct {
		R      json.RawMessage
		hidden string
		Skip   string `json:"-"`
	}{json.RawMessage(`"\ufffd"`), "\xff", "\xff"})
	require.NoError(t, err)
	assert.Equal(t, "{\"R\":\"\ufffd\"}", string(got))

	deep := any(1)
	for range 10_000 {
		deep = []any{deep}
	}
	_, err = Marshal(deep)
	assert.ErrorContains(t, err, "nested deeper")
}

// marshaler is a json.Marshaler whose output is its own text.
type marshaler string

func (m marshaler) MarshalJSON() ([]byte, error) { return []byte(m), nil }

// addrMarshaler is a json.Marshaler only through a pointer, so
// encoding/json calls it only for addressable values.
type addrMarshaler struct{ S string }

func (m *addrMarshaler) MarshalJSON() ([]byte, error) { return []byte(m.S), nil }

// text is an encoding.TextMarshaler, which encoding/json encodes as a
// string, replacing invalid UTF-8.
type text string

func (t text) MarshalText() ([]byte, error) { return []byte(t), nil }

// byteText is an encoding.TextMarshaler that is no string: only its text
// tells whether encoding/json replaces bytes of it.
type byteText []byte

func (t byteText) MarshalText() ([]byte, error) { return t, nil }

type embedded struct{ S string }

// Embedded is exported only to be embedded by pointer.
type Embedded struct{ S string }
