package canonjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// decode decodes the JSON text b with encoding/json, keeping numbers as
// their text, and fails unless b is exactly one value.
func decode(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the value")
	}
	return v, nil
}

// jsonEqual is JSON equality as the package documents it, written
// independently of the package: numbers by exact value, strings by code
// points, arrays in order, objects by members in any order.
func jsonEqual(a, b any) bool {
	switch a := a.(type) {
	case json.Number:
		b, ok := b.(json.Number)
		if !ok {
			return false
		}
		return decimal(string(a)) == decimal(string(b))
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !jsonEqual(a[i], b[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			w, ok := b[k]
			if !ok || !jsonEqual(v, w) {
				return false
			}
		}
		return true
	}
	return a == b // nil, bool, string
}

// decimal returns the value of the JSON number s as its sign, its
// significant digits and the exponent of their last digit, in a comparable
// form. Exponents may have any number of digits, which big.Rat refuses.
func decimal(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mantissa, expText, _ := strings.Cut(strings.ToLower(s), "e")
	intPart, frac, _ := strings.Cut(mantissa, ".")
	exp := new(big.Int)
	if expText != "" {
		exp.SetString(expText, 10)
	}
	exp.Sub(exp, big.NewInt(int64(len(frac))))
	digits := strings.TrimLeft(intPart+frac, "0")
	if digits == "" {
		return "0"
	}
	trimmed := strings.TrimRight(digits, "0")
	exp.Add(exp, big.NewInt(int64(len(digits)-len(trimmed))))
	sign := "+"
	if neg {
		sign = "-"
	}
	return sign + trimmed + "e" + exp.String()
}

// semanticRejections are the reasons Canonicalize may refuse syntactically
// valid JSON for.
var semanticRejections = []string{"invalid UTF-8", "NUL character", "lone UTF-16 surrogate", "number out of range", "nested deeper than", "larger than"}

// FuzzCanonicalize checks Canonicalize on arbitrary bytes. Accepted input
// must be valid JSON, and its canonical form valid UTF-8, valid compact
// JSON, a fixed point, JSON-equal to the input, and what encoding the
// decoded input again canonicalizes to; encoding/json must decode it with
// numbers as float64s, and its numbers must keep the limits on range,
// fraction digits and PostgreSQL's text, checked here independently.
// Refused valid JSON must be refused for one of the documented reasons,
// never as a syntax error, and if for a number, one must break a limit.
func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{
		`null`, `true`, ` false `, `0`, `-0.0e-0`, `1E+2`, `123456789012345678901234567890`, `1e400`, `1e-400`, `5e-324`,
		`0.000001`, `1e21`, `1e20`, `-12.50e-3`, `"a\/b\u0041\n\u00e9\ud83d\ude00<>&"`, `"\u0000"`, `"\ufffd"`, `"\ud800x"`,
		`"\u2028\u001f"`, "\"\xff\"", "\"\xed\xa0\x80\"", `{"b":1,"a":[1,2,{"d":null,"c":"x"}]}`, `{"a":1,"a":2,"\u0061":3}`,
		`{"é":1,"e":2,"😀":3,"":4}`, `[1,]`, `{"a" 1}`, `[1] 2`, `nul`, `01`, `1.`, `.5`, `-`, `1e`, `[[[[[[[[]]]]]]]]`,
		strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth),
		strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1),
		// The cases of the issue on numbers and U+FFFD, and their limits.
		`1e309`, `1e399`, `-1e309`, `[1e-400]`, `12345678901234567890123`, `1.7976931348623157e308`, `1.7976931348623159e308`,
		`2.4703282292062328e-324`, `2.4703282292062327e-324`, `-3e-324`, `1e308`, `{"a":1e-323}`,
		"0." + strings.Repeat("1", MaxFractionDigits), "0." + strings.Repeat("1", MaxFractionDigits+1),
		"\"\ufffd\"", `"\uFFFD"`, `{"\ufffd":["\ufffd","\ufffd"]}`, "[\"\ufffd\xff\"]",
		`["` + strings.Repeat("x", 235) + `"` + strings.Repeat(",1e300", 15) + "]",
		`["` + strings.Repeat("x", 234) + `"` + strings.Repeat(",1e300", 15) + "]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Canonicalize(in)
		if err != nil {
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if cerr.Offset < -1 || cerr.Offset > len(in) {
				t.Fatalf("error offset %d outside the input of %d bytes", cerr.Offset, len(in))
			}
			if json.Valid(in) && !containsAny(cerr.Reason, semanticRejections) {
				t.Fatalf("valid JSON %q refused for %q", in, cerr.Reason)
			}
			if json.Valid(in) && strings.Contains(cerr.Reason, "number out of range") {
				if v, err := decode(in); err == nil && firstNumberProblem(v) == "" {
					t.Fatalf("%q refused for %q, but every number is within the limits", in, cerr.Reason)
				}
			}
			return
		}
		if !json.Valid(in) {
			t.Fatalf("accepted invalid JSON %q as %q", in, out)
		}
		if !utf8.Valid(out) {
			t.Fatalf("%q: output %q is not valid UTF-8", in, out)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, out); err != nil || !bytes.Equal(compact.Bytes(), out) {
			t.Fatalf("%q: output %q is not compact valid JSON (%v)", in, out, err)
		}
		again, err := Canonicalize(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("%q: canonical form %q is not a fixed point: %q, %v", in, out, again, err)
		}
		want, err := decode(in)
		if err != nil {
			t.Fatalf("encoding/json cannot decode accepted input %q: %v", in, err)
		}
		got, err := decode(out)
		if err != nil || !jsonEqual(want, got) {
			t.Fatalf("%q: canonical form %q is not JSON-equal to it (%v)", in, out, err)
		}
		var floats any
		if err := json.Unmarshal(out, &floats); err != nil {
			t.Fatalf("%q: encoding/json cannot decode canonical form %q with float64 numbers: %v", in, out, err)
		}
		if problem := firstNumberProblem(got); problem != "" {
			t.Fatalf("%q: accepted, but %s", in, problem)
		}
		if n, limit := pgLength(got), ExpansionFactor*len(out)+ExpansionSlack; n > limit {
			t.Fatalf("%q: PostgreSQL returns %d bytes for canonical form of %d, over %d", in, n, len(out), limit)
		}
		viaGo, err := Marshal(want)
		if err != nil || !bytes.Equal(viaGo, out) {
			t.Fatalf("%q: re-encoded by encoding/json, canonicalizes to %q (%v), want %q", in, viaGo, err, out)
		}
	})
}

// FuzzCanonicalEquality checks the package's promise: two accepted JSON
// texts have the same canonical form exactly when they are JSON-equal.
func FuzzCanonicalEquality(f *testing.F) {
	for _, p := range [][2]string{
		{`1`, `1.0`},
		{`100`, `1e2`},
		{`0.1`, `1e-1`},
		{`0`, `-0`},
		{`1`, `1.0000000000000000000001`},
		{`"é"`, `"\u00e9"`},
		{`"é"`, `"e\u0301"`},
		{`"\ud83d\ude00"`, `"😀"`},
		{`{"a":1,"b":[1.0,"x"]}`, ` { "b" : [ 1 , "\u0078" ] , "a" : 10e-1 } `},
		{`{"a":1,"a":2}`, `{"a":2}`},
		{`{"a":1}`, `{"a":1,"b":null}`},
		{`[]`, `{}`},
		{`[1,2]`, `[2,1]`},
		{`null`, `false`},
		{`"1"`, `1`},
		{`12345678901234567890`, `12345678901234567891`},
		{`12345678901234567890123`, `1.2345678901234567890123e22`},
		{`12345678901234567890123`, `12345678901234567890124`},
		{`1.7976931348623157e308`, `1.7976931348623158e308`},
		{`5e-324`, `4.9406564584124654e-324`},
		{`"\ufffd"`, "\"\ufffd\""},
		{`"\ufffd"`, `"\uFFFD"`},
		{`"\ufffd"`, `"?"`},
	} {
		f.Add([]byte(p[0]), []byte(p[1]))
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		ca, errA := Canonicalize(a)
		cb, errB := Canonicalize(b)
		if errA != nil || errB != nil {
			return
		}
		va, errA := decode(a)
		vb, errB := decode(b)
		if errA != nil || errB != nil {
			t.Fatalf("encoding/json cannot decode accepted input: %v, %v", errA, errB)
		}
		if equal := jsonEqual(va, vb); equal != bytes.Equal(ca, cb) {
			t.Fatalf("%q and %q: JSON-equal %v, but canonical forms %q and %q", a, b, equal, ca, cb)
		}
	})
}

// FuzzMarshalString checks that Marshal accepts exactly the Go strings a
// database stores as given, as values and as object keys, alone or beside
// JSON text holding the escape \ufffd, and that what it accepts decodes
// back to the same string.
func FuzzMarshalString(f *testing.F) {
	for _, s := range []string{"", "a", "\x00", "a\x00b", "\xff", "\xc3\x28", "\xed\xa0\x80", "\ufffd", "\u2028", "<&>", `"\`, "\x1f\x7f", "😀", "e\u0301",
		"\ufffd\xff", `\ufffd`, "\xef\xbf", "\xef\xbf\xbd\xbd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		storable := utf8.ValidString(s) && !strings.ContainsRune(s, 0)
		escaped := json.RawMessage(`"\ufffd"`)
		for _, v := range []any{s, map[string]any{s: []any{s}}, []any{escaped, map[string]string{s: s}}} {
			out, err := Marshal(v)
			if storable != (err == nil) {
				t.Fatalf("Marshal(%#v) = %q, %v; want accepted = %v", v, out, err, storable)
			}
			if err != nil {
				continue
			}
			var back any
			if err := json.Unmarshal(out, &back); err != nil {
				t.Fatalf("Marshal(%#v) = %q, which does not decode: %v", v, out, err)
			}
			want := any(s)
			switch v.(type) {
			case map[string]any:
				want = map[string]any{s: []any{s}}
			case []any:
				want = []any{"\ufffd", map[string]any{s: s}}
			}
			if !jsonEqual(want, back) {
				t.Fatalf("Marshal(%#v) = %q, which decodes to %#v", v, out, back)
			}
		}
	})
}

// parseNumber splits the JSON number s into its sign, its significant
// digits without leading or trailing zeros ("" for zero) and the exponent
// of their last digit.
func parseNumber(s string) (neg bool, digits string, exp *big.Int) {
	neg = strings.HasPrefix(s, "-")
	mantissa, expText, _ := strings.Cut(strings.ToLower(strings.TrimPrefix(s, "-")), "e")
	intPart, frac, _ := strings.Cut(mantissa, ".")
	exp = new(big.Int)
	if expText != "" {
		exp.SetString(strings.TrimPrefix(expText, "+"), 10)
	}
	exp.Sub(exp, big.NewInt(int64(len(frac))))
	digits = strings.TrimLeft(intPart+frac, "0")
	trimmed := strings.TrimRight(digits, "0")
	exp.Add(exp, big.NewInt(int64(len(digits)-len(trimmed))))
	return neg, trimmed, exp
}

// numberProblem says which documented limit the JSON number s breaks, or
// "" for none, computed with exact rational arithmetic.
func numberProblem(s string) string {
	if _, written, ok := strings.Cut(strings.ToLower(s), "e"); ok {
		if e, _ := new(big.Int).SetString(strings.TrimPrefix(written, "+"), 10); e.CmpAbs(big.NewInt(1_000_000)) > 0 {
			return s + " has an exponent beyond ±1,000,000"
		}
	}
	_, digits, exp := parseNumber(s)
	if digits == "" {
		return ""
	}
	point := new(big.Int).Add(exp, big.NewInt(int64(len(digits))))
	switch {
	case point.Cmp(big.NewInt(400)) > 0:
		return s + " overflows float64"
	case point.Cmp(big.NewInt(-400)) < 0:
		return s + " is 0 as a float64"
	}
	r, _ := new(big.Rat).SetString(digits + "e" + exp.String())
	switch f, _ := r.Float64(); {
	case math.IsInf(f, 0):
		return s + " overflows float64"
	case f == 0:
		return s + " is 0 as a float64"
	}
	if exp.Sign() < 0 && -exp.Int64() > MaxFractionDigits {
		return s + " has too many fraction digits"
	}
	return ""
}

// firstNumberProblem returns the numberProblem of the first number of v
// that has one.
func firstNumberProblem(v any) string {
	switch v := v.(type) {
	case json.Number:
		return numberProblem(string(v))
	case []any:
		for _, e := range v {
			if p := firstNumberProblem(e); p != "" {
				return p
			}
		}
	case map[string]any:
		for _, e := range v {
			if p := firstNumberProblem(e); p != "" {
				return p
			}
		}
	}
	return ""
}

// pgLength returns the length of the text PostgreSQL's jsonb returns for
// v: numbers written out in full, a space after each comma and colon, and
// strings escaped as in JSON's minimal form.
func pgLength(v any) int {
	switch v := v.(type) {
	case nil:
		return len("null")
	case bool:
		return len(strconv.FormatBool(v))
	case string:
		n := 2
		for i := 0; i < len(v); i++ {
			switch c := v[i]; {
			case c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			case c < 0x20:
				n += 6
			default:
				n++
			}
		}
		return n
	case json.Number:
		neg, digits, exp := parseNumber(string(v))
		if digits == "" {
			return 1
		}
		n := len(digits)
		if neg {
			n++
		}
		e := int(exp.Int64())
		switch point := len(digits) + e; {
		case e >= 0:
			return n + e
		case point > 0:
			return n + 1
		default:
			return n + 2 - point
		}
	case []any:
		n := 2
		for i, e := range v {
			if i > 0 {
				n += 2
			}
			n += pgLength(e)
		}
		return n
	case map[string]any:
		n := 2
		i := 0
		for k, e := range v {
			if i > 0 {
				n += 2
			}
			i++
			n += pgLength(k) + 2 + pgLength(e)
		}
		return n
	}
	panic(fmt.Sprintf("pgLength: %T", v))
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
