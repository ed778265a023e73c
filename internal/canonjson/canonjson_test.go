package canonjson

import (
	"encoding/json"

	"math"
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
		`"a\u0000b"`:     "NUL",
		"\"a\xffb\"":     "invalid UTF-8",
		`"\ufffd"`:       "invalid UTF-8",
		`"\ud800"`:       "surrogate",
		`"\ud800\u0041"`: "surrogate",
		`1e401`:          "out of range",
		`1e-500`:         "out of range",
		`01`:             "invalid number",
		`1.`:             "invalid number",
		`[1,]`:           "invalid JSON value",
		`{"a" 1}`:        "expected :",
		`{"a":1`:         "unexpected end",
		`[1] 2`:          "after the value",
		`nul`:            "invalid JSON value",
		"\"a\nb\"":       "control character",
		`"\x"`:           "invalid escape",
		`"\u12"`:         "escape",
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

	// The limit holds for the canonical output, not only the input.
	grows := "[" + strings.Repeat("1e20,", MaxBytes/5-1) + "1]"
	require.LessOrEqual(t, len(grows), MaxBytes)
	_, err = Canonicalize([]byte(grows))
	require.ErrorContains(t, err, "once canonical")
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
		strings.Repeat("x", MaxBytes),
	}
	for _, v := range bad {
		_, err := Marshal(v)
		var cerr *Error
		assert.ErrorAs(t, err, &cerr, "%T should be rejected", v)
	}

	deep := any(1)
	for range 10_000 {
		deep = []any{deep}
	}
	_, err = Marshal(deep)
	assert.ErrorContains(t, err, "nested deeper")
}
