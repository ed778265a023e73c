// Package canonjson turns Go values into canonical JSON: the one byte form
// that two JSON-equal values share, so that databases can compare JSON by its
// text and every dialect agrees on what "equal" means.
//
// Two values are JSON-equal when they are the same kind and: numbers have the
// same exact decimal value (1, 1.0 and 1e0 are equal), strings have the same
// code points, arrays have equal elements in the same order, and objects have
// the same keys with equal values, in any order. Canonical form has no
// insignificant whitespace, object keys sorted bytewise with duplicates
// resolved to the last one, numbers in their shortest exact decimal form and
// strings escaped only where JSON requires it.
//
// Values that a database would store other than as given are rejected:
// invalid UTF-8 (which encoding/json silently replaces with U+FFFD), the NUL
// character (which PostgreSQL cannot store in text or jsonb) and lone UTF-16
// surrogates. U+FFFD itself is a character like any other, kept whether
// written raw or as the escape \ufffd.
//
// Numbers must survive every database and encoding/json alike:
//
//   - A number must round to a finite float64, so that encoding/json
//     decodes it into a float64 without error: its magnitude must be below
//     2^1024 - 2^970 (about 1.7976931348623158e308). A nonzero number must
//     not round to zero: its magnitude must be above 2^-1075 (about
//     2.4703282292062328e-324). Digits beyond a float64's precision are
//     kept, so big integers stay exact in the stored text.
//   - An exponent may be at most 1,000,000 in magnitude as written, even
//     in a zero, so that parsing it never overflows.
//   - Written without an exponent, a number may have at most
//     MaxFractionDigits digits after the decimal point, the most
//     PostgreSQL's numeric type holds.
//   - PostgreSQL's jsonb returns numbers written out in full (1e+300 as 301
//     digits, so a number comes back at most 320 bytes longer than its
//     canonical form) and a space after each comma and colon. A value whose
//     text would come back longer than ExpansionFactor times its canonical
//     form plus ExpansionSlack bytes is refused, so that no argument reads
//     back many times larger than it was written.
package canonjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of arrays and objects accepted.
const MaxDepth = 128

// MaxBytes is the largest encoded value accepted, in bytes.
const MaxBytes = 8 << 20

// MaxFractionDigits is the most digits a number may have after the decimal
// point once written without an exponent: PostgreSQL's numeric type, behind
// jsonb, refuses more.
const MaxFractionDigits = 16383

// ExpansionFactor and ExpansionSlack bound the text PostgreSQL returns for a
// value, with its numbers written out in full and a space after each comma
// and colon: at most ExpansionFactor times the canonical form's length plus
// ExpansionSlack bytes. The slack lets a small value hold a few numbers of
// any magnitude; the factor stops a large one from growing by tens of times.
const (
	ExpansionFactor = 2
	ExpansionSlack  = 4 << 10
)

// Decimal points (see parser.number) bounding the float64 range. A number
// with point p lies in [10^(p-1), 10^p): with a point between minPoint and
// maxPoint it is a nonzero finite float64 whatever its digits; at them,
// strconv.ParseFloat decides; beyond them, it is none.
const (
	maxPoint = 309  // [1e308, 1e309) holds MaxFloat64 and the overflow
	minPoint = -323 // [1e-324, 1e-323) holds 2^-1075, which rounds to 0
)

// maxExponentDigits bounds the exponent as written, before the digits of the
// number are taken into account.
const maxExponentDigits = 1_000_000

// Error describes why a value has no canonical JSON form.
type Error struct {
	// Reason is a short human description, such as "invalid UTF-8".
	Reason string
	// Offset is the byte offset in the encoded JSON where the problem was
	// found, or -1 when the value could not be encoded at all.
	Offset int
}

func (e *Error) Error() string {
	if e.Offset < 0 {
		return e.Reason
	}
	return fmt.Sprintf("%s at byte %d", e.Reason, e.Offset)
}

// Marshal encodes v with encoding/json and returns its canonical form.
//
// encoding/json replaces each invalid UTF-8 byte of a Go string (a value, a
// map key or the text of an encoding.TextMarshaler) with the escape \ufffd,
// which Marshal refuses. The output of a json.Marshaler, json.RawMessage
// included, is JSON text like any given to Canonicalize: an escape \ufffd
// there is the character U+FFFD, kept, while raw invalid bytes are refused.
func Marshal(v any) ([]byte, error) {
	val, err := MarshalValue(v)
	return val.JSON, err
}

// Value is the canonical form of a value, with what a larger value made
// of it needs to know to check its own limits without parsing it again
// (see Array).
type Value struct {
	// JSON is the canonical form.
	JSON []byte
	// growth is how many bytes longer than JSON PostgreSQL's jsonb text
	// of the value is (see parser.growth).
	growth int
	// depth is the deepest nesting of arrays and objects in the value, 1
	// for an array of scalars, 0 for a scalar.
	depth int
}

// MarshalValue is Marshal, returning the canonical form as a Value.
func MarshalValue(v any) (Value, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return Value{}, &Error{Reason: "cannot be encoded as JSON: " + err.Error(), Offset: -1}
	}
	val, escapedFFFD, err := canonicalize(raw)
	if err != nil {
		return Value{}, err
	}
	// encoding/json writes the escape \ufffd for each byte it replaces;
	// where the parser met none, v had no invalid UTF-8 and needs no
	// search.
	if escapedFFFD {
		if path, found := invalidUTF8(reflect.ValueOf(v)); found {
			return Value{}, &Error{Reason: "invalid UTF-8 in the Go string at " + path + " (encoding/json would store U+FFFD)", Offset: -1}
		}
	}
	return val, nil
}

// Canonicalize returns the canonical form of the JSON text raw.
func Canonicalize(raw []byte) ([]byte, error) {
	val, _, err := canonicalize(raw)
	return val.JSON, err
}

// canonicalize returns the canonical form of raw, with whether raw holds
// the escape of U+FFFD.
func canonicalize(raw []byte) (Value, bool, error) {
	if len(raw) > MaxBytes {
		return Value{}, false, tooLarge()
	}
	p := parser{in: raw, out: make([]byte, 0, len(raw))}
	p.skipSpace()
	if err := p.value(0); err != nil {
		return Value{}, false, err
	}
	p.skipSpace()
	if p.pos != len(p.in) {
		return Value{}, false, p.fail("unexpected data after the value")
	}
	// Numbers such as 1e20 grow when written out, so the output is
	// bounded too.
	if len(p.out) > MaxBytes {
		return Value{}, false, &Error{Reason: fmt.Sprintf("larger than %d bytes once canonical", MaxBytes), Offset: -1}
	}
	if err := checkExpansion(len(p.out), p.growth); err != nil {
		return Value{}, false, err
	}
	return Value{JSON: p.out, growth: p.growth, depth: p.depth}, p.escapedFFFD, nil
}

// tooLarge is the error of a text longer than MaxBytes.
func tooLarge() error {
	return &Error{Reason: fmt.Sprintf("larger than %d bytes", MaxBytes), Offset: -1}
}

// checkExpansion refuses a canonical form n bytes long whose text on
// PostgreSQL is growth bytes longer, when that is past the expansion bound.
func checkExpansion(n, growth int) error {
	if stored := n + growth; stored > ExpansionFactor*n+ExpansionSlack {
		return &Error{Reason: fmt.Sprintf(
			"larger than %d times its canonical %d bytes plus %d once PostgreSQL writes its numbers out in full (%d bytes)",
			ExpansionFactor, n, ExpansionSlack, stored), Offset: -1}
	}
	return nil
}

// Array writes the canonical JSON array of Values, in the order they are
// appended: an array of canonical values is canonical. It checks the
// array's limits (MaxBytes, MaxDepth and the expansion bound) from what
// each Value knows of itself, and refuses exactly what Canonicalize
// refuses of the array's text, without parsing it again. The zero Array
// is the empty array.
type Array struct {
	out []byte
	// growth and depth are those of the array (see Value): its elements'
	// growth and a byte for each comma, which jsonb writes ", "; its
	// elements' deepest nesting.
	growth, depth int
}

// Append adds v to the end of a.
func (a *Array) Append(v Value) {
	if len(a.out) == 0 {
		// Room for a one-element array, the most common, in one go.
		a.out = append(make([]byte, 0, len(v.JSON)+2), '[')
	} else {
		a.out = append(a.out, ',')
		a.growth++
	}
	a.out = append(a.out, v.JSON...)
	a.growth += v.growth
	a.depth = max(a.depth, v.depth)
}

// Len returns the length of a's text so far, without its closing bracket.
func (a *Array) Len() int { return max(len(a.out), 1) }

// Close returns the canonical text of a, or the error Canonicalize returns
// for that text. a must not be used after.
func (a *Array) Close() ([]byte, error) {
	if len(a.out) == 0 {
		a.out = append(a.out, '[')
	}
	out := append(a.out, ']')
	a.out = nil
	if len(out) > MaxBytes {
		return nil, tooLarge()
	}
	// The array nests its elements one level deeper than they are on
	// their own. Past MaxDepth the parser's error names the offset of
	// the first container too deep, which only parsing finds; the array
	// is refused anyway, so it is parsed for that.
	if 1+a.depth > MaxDepth {
		if _, err := Canonicalize(out); err != nil {
			return nil, err
		}
		return nil, &Error{Reason: fmt.Sprintf("nested deeper than %d levels", MaxDepth), Offset: -1}
	}
	// out is as long as its canonical form: no "once canonical" check.
	if err := checkExpansion(len(out), a.growth); err != nil {
		return nil, err
	}
	return out, nil
}

type parser struct {
	in  []byte
	pos int
	out []byte
	// growth is how many bytes longer than out PostgreSQL's jsonb text of
	// the value is: numbers written out in full and a space after each
	// comma and colon.
	growth int
	// depth is the deepest nesting of arrays and objects met.
	depth int
	// escapedFFFD reports whether a string held the escape of U+FFFD, as
	// encoding/json writes it for each invalid byte of a Go string.
	escapedFFFD bool
}

func (p *parser) fail(reason string) error { return &Error{Reason: reason, Offset: p.pos} }

func (p *parser) skipSpace() {
	for p.pos < len(p.in) {
		switch p.in[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value(depth int) error {
	if p.pos >= len(p.in) {
		return p.fail("unexpected end of JSON")
	}
	switch c := p.in[p.pos]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		s, err := p.str()
		if err != nil {
			return err
		}
		p.out = appendString(p.out, s)
		return nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if bytes.HasPrefix(p.in[p.pos:], []byte(lit)) {
				p.pos += len(lit)
				p.out = append(p.out, lit...)
				return nil
			}
		}
		return p.fail("invalid JSON value")
	}
}

func (p *parser) array(depth int) error {
	if depth > MaxDepth {
		return p.fail(fmt.Sprintf("nested deeper than %d levels", MaxDepth))
	}
	p.depth = max(p.depth, depth)
	p.pos++ // [
	p.out = append(p.out, '[')
	p.skipSpace()
	if p.pos < len(p.in) && p.in[p.pos] == ']' {
		p.pos++
		p.out = append(p.out, ']')
		return nil
	}
	for {
		p.skipSpace()
		if err := p.value(depth); err != nil {
			return err
		}
		p.skipSpace()
		if p.pos >= len(p.in) {
			return p.fail("unexpected end of JSON")
		}
		switch p.in[p.pos] {
		case ',':
			p.pos++
			p.out = append(p.out, ',')
			p.growth++ // jsonb writes ", "
		case ']':
			p.pos++
			p.out = append(p.out, ']')
			return nil
		default:
			return p.fail("expected , or ] in array")
		}
	}
}

type member struct {
	key   string
	value []byte
	// growth is the value's share of parser.growth.
	growth int
}

func (p *parser) object(depth int) error {
	if depth > MaxDepth {
		return p.fail(fmt.Sprintf("nested deeper than %d levels", MaxDepth))
	}
	p.depth = max(p.depth, depth)
	p.pos++ // {
	var members []member
	p.skipSpace()
	if p.pos < len(p.in) && p.in[p.pos] == '}' {
		p.pos++
		p.out = append(p.out, '{', '}')
		return nil
	}
	// Each member's value is canonicalized into the shared output buffer, then
	// cut off it, so that the members can be sorted before they are written.
	start := len(p.out)
	for {
		p.skipSpace()
		if p.pos >= len(p.in) || p.in[p.pos] != '"' {
			return p.fail("expected string key in object")
		}
		key, err := p.str()
		if err != nil {
			return err
		}
		p.skipSpace()
		if p.pos >= len(p.in) || p.in[p.pos] != ':' {
			return p.fail("expected : after object key")
		}
		p.pos++
		p.skipSpace()
		growth := p.growth
		if err := p.value(depth); err != nil {
			return err
		}
		members = append(members, member{key: key, value: slices.Clone(p.out[start:]), growth: p.growth - growth})
		p.out = p.out[:start]
		p.growth = growth
		p.skipSpace()
		if p.pos >= len(p.in) {
			return p.fail("unexpected end of JSON")
		}
		if p.in[p.pos] == '}' {
			p.pos++
			break
		}
		if p.in[p.pos] != ',' {
			return p.fail("expected , or } in object")
		}
		p.pos++
	}
	// A stable sort keeps duplicates in input order; the last one wins, as in
	// encoding/json and PostgreSQL's jsonb.
	slices.SortStableFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })
	p.out = append(p.out, '{')
	first := true
	for i, m := range members {
		if i+1 < len(members) && members[i+1].key == m.key {
			continue
		}
		if !first {
			p.out = append(p.out, ',')
			p.growth++ // jsonb writes ", "
		}
		first = false
		p.out = appendString(p.out, m.key)
		p.out = append(p.out, ':')
		p.out = append(p.out, m.value...)
		p.growth += 1 + m.growth // jsonb writes ": "
	}
	p.out = append(p.out, '}')
	return nil
}

// str reads a JSON string at p.pos and returns its decoded text.
func (p *parser) str() (string, error) {
	p.pos++ // opening quote
	var b strings.Builder
	runStart := p.pos
	for {
		if p.pos >= len(p.in) {
			return "", p.fail("unterminated string")
		}
		c := p.in[p.pos]
		switch {
		case c == '"':
			b.Write(p.in[runStart:p.pos])
			p.pos++
			return b.String(), nil
		case c < 0x20:
			return "", p.fail("control character in string")
		case c == '\\':
			b.Write(p.in[runStart:p.pos])
			r, err := p.escape()
			if err != nil {
				return "", err
			}
			b.WriteRune(r)
			runStart = p.pos
		case c < utf8.RuneSelf:
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.in[p.pos:])
			if r == utf8.RuneError && size == 1 {
				return "", p.fail("invalid UTF-8")
			}
			p.pos += size
		}
	}
}

// escape reads the escape sequence at p.pos and returns the rune it stands for.
func (p *parser) escape() (rune, error) {
	if p.pos+1 >= len(p.in) {
		return 0, p.fail("unterminated string")
	}
	c := p.in[p.pos+1]
	p.pos += 2
	switch c {
	case '"', '\\', '/':
		return rune(c), nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
	default:
		p.pos -= 2
		return 0, p.fail("invalid escape in string")
	}
	r, err := p.hex4()
	if err != nil {
		return 0, err
	}
	// \ufffd is U+FFFD, a valid character, here as anywhere in JSON text;
	// Marshal alone tells it from encoding/json's replacement of invalid
	// UTF-8 in Go strings, as only it sees the Go value.
	switch {
	case r == 0:
		p.pos -= 6
		return 0, p.fail(`NUL character (\u0000) in string`)
	case r == utf8.RuneError:
		p.escapedFFFD = true
	case utf16.IsSurrogate(r):
		if p.pos+1 < len(p.in) && p.in[p.pos] == '\\' && p.in[p.pos+1] == 'u' {
			p.pos += 2
			r2, err := p.hex4()
			if err != nil {
				return 0, err
			}
			if pair := utf16.DecodeRune(r, r2); pair != utf8.RuneError {
				return pair, nil
			}
		}
		p.pos -= 6
		return 0, p.fail("lone UTF-16 surrogate in string")
	}
	return r, nil
}

func (p *parser) hex4() (rune, error) {
	if p.pos+4 > len(p.in) {
		return 0, p.fail("short \\u escape")
	}
	v, err := strconv.ParseUint(string(p.in[p.pos:p.pos+4]), 16, 32)
	if err != nil {
		return 0, p.fail("invalid \\u escape")
	}
	p.pos += 4
	return rune(v), nil
}

// number reads a JSON number and writes its shortest exact decimal form.
func (p *parser) number() error {
	start := p.pos
	neg := false
	if p.in[p.pos] == '-' {
		neg = true
		p.pos++
	}
	intStart := p.pos
	for p.pos < len(p.in) && isDigit(p.in[p.pos]) {
		p.pos++
	}
	intPart := p.in[intStart:p.pos]
	if len(intPart) == 0 || (len(intPart) > 1 && intPart[0] == '0') {
		p.pos = start
		return p.fail("invalid number")
	}
	var fracPart []byte
	if p.pos < len(p.in) && p.in[p.pos] == '.' {
		p.pos++
		fracStart := p.pos
		for p.pos < len(p.in) && isDigit(p.in[p.pos]) {
			p.pos++
		}
		fracPart = p.in[fracStart:p.pos]
		if len(fracPart) == 0 {
			p.pos = start
			return p.fail("invalid number")
		}
	}
	exp := 0
	if p.pos < len(p.in) && (p.in[p.pos] == 'e' || p.in[p.pos] == 'E') {
		p.pos++
		expNeg := false
		if p.pos < len(p.in) && (p.in[p.pos] == '+' || p.in[p.pos] == '-') {
			expNeg = p.in[p.pos] == '-'
			p.pos++
		}
		expStart := p.pos
		for p.pos < len(p.in) && isDigit(p.in[p.pos]) {
			exp = exp*10 + int(p.in[p.pos]-'0')
			if exp > maxExponentDigits {
				// Refused outright rather than capped: a capped exponent
				// could be cancelled by a long run of zeros and give a
				// wrong value.
				p.pos = start
				return p.fail("number out of range")
			}
			p.pos++
		}
		if p.pos == expStart {
			p.pos = start
			return p.fail("invalid number")
		}
		if expNeg {
			exp = -exp
		}
	}
	digits := make([]byte, 0, len(intPart)+len(fracPart))
	digits = append(append(digits, intPart...), fracPart...)
	exp -= len(fracPart)
	for len(digits) > 0 && digits[0] == '0' {
		digits = digits[1:]
	}
	if len(digits) == 0 {
		p.out = append(p.out, '0')
		return nil
	}
	for digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
		exp++
	}
	// point is the position of the decimal point relative to the digits:
	// value = 0.digits × 10^point.
	point := len(digits) + exp
	if reason := checkNumber(digits, point); reason != "" {
		p.pos = start
		return p.fail(reason)
	}
	written := len(p.out)
	if neg {
		p.out = append(p.out, '-')
	}
	p.out = appendDecimal(p.out, digits, point)
	p.growth += fullLength(neg, len(digits), point) - (len(p.out) - written)
	return nil
}

// checkNumber returns why 0.digits × 10^point cannot be stored, or "" if it
// can; digits has no leading or trailing zeros.
func checkNumber(digits []byte, point int) string {
	switch {
	case point > maxPoint:
		return "number out of range (beyond the largest float64)"
	case point < minPoint:
		return "number out of range (nonzero but 0 as a float64)"
	case point == maxPoint || point == minPoint:
		// The one decade at each end where the digits decide. ParseFloat
		// rounds correctly however many digits there are.
		text := make([]byte, 0, len(digits)+8)
		text = append(append(append(text, '0', '.'), digits...), 'e')
		f, err := strconv.ParseFloat(string(strconv.AppendInt(text, int64(point), 10)), 64)
		if err != nil {
			return "number out of range (beyond the largest float64)"
		}
		if f == 0 {
			return "number out of range (nonzero but 0 as a float64)"
		}
	}
	if len(digits)-point > MaxFractionDigits {
		return fmt.Sprintf("number out of range (more than %d digits after the decimal point)", MaxFractionDigits)
	}
	return ""
}

// fullLength returns the length of 0.digits × 10^point, with n digits,
// written without an exponent, as PostgreSQL's numeric type writes it.
func fullLength(neg bool, n, point int) int {
	sign := 0
	if neg {
		sign = 1
	}
	switch {
	case point >= n: // 1500
		return sign + point
	case point > 0: // 1.5
		return sign + n + 1
	default: // 0.0015
		return sign + 2 - point + n
	}
}

// appendDecimal writes 0.digits × 10^point the way JavaScript prints
// numbers: plainly for moderate magnitudes, in exponent form otherwise.
func appendDecimal(out, digits []byte, point int) []byte {
	n := len(digits)
	switch {
	case n <= point && point <= 21:
		out = append(out, digits...)
		for range point - n {
			out = append(out, '0')
		}
	case 0 < point && point <= 21:
		out = append(out, digits[:point]...)
		out = append(out, '.')
		out = append(out, digits[point:]...)
	case -6 < point && point <= 0:
		out = append(out, '0', '.')
		for range -point {
			out = append(out, '0')
		}
		out = append(out, digits...)
	default:
		out = append(out, digits[0])
		if n > 1 {
			out = append(out, '.')
			out = append(out, digits[1:]...)
		}
		out = append(out, 'e')
		if point-1 >= 0 {
			out = append(out, '+')
		}
		out = strconv.AppendInt(out, int64(point-1), 10)
	}
	return out
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string, escaping only what JSON requires.
func appendString(out []byte, s string) []byte {
	out = append(out, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		out = append(out, s[start:i]...)
		switch c {
		case '"', '\\':
			out = append(out, '\\', c)
		case '\n':
			out = append(out, '\\', 'n')
		case '\r':
			out = append(out, '\\', 'r')
		case '\t':
			out = append(out, '\\', 't')
		case '\b':
			out = append(out, '\\', 'b')
		case '\f':
			out = append(out, '\\', 'f')
		default:
			out = append(out, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	out = append(out, s[start:]...)
	return append(out, '"')
}
