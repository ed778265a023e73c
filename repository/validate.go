package repository

import (
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/internal/canonjson"
)

// MaxNameBytes is the longest name or string ID accepted: phases, agents,
// models, providers, CTA kinds, sandbox IDs and CTA IDs.
const MaxNameBytes = 255

// MaxMessageBytes is the longest failure message accepted.
const MaxMessageBytes = 64 << 10

func checkID(field string, id uuid.UUID) error {
	if id == uuid.Nil {
		return &InputError{Field: field, Reason: "must not be the zero UUID"}
	}
	return nil
}

// checkName validates a required name: 1 to MaxNameBytes bytes of UTF-8
// text without NUL.
func checkName(field, s string) error {
	if s == "" {
		return &InputError{Field: field, Reason: "must not be empty"}
	}
	return checkText(field, s, MaxNameBytes)
}

// checkText validates optional text of at most max bytes.
func checkText(field, s string, max int) error {
	switch {
	case len(s) > max:
		return &InputError{Field: field, Reason: "longer than " + strconv.Itoa(max) + " bytes"}
	case !utf8.ValidString(s):
		return &InputError{Field: field, Reason: "invalid UTF-8"}
	case strings.IndexByte(s, 0) >= 0:
		return &InputError{Field: field, Reason: "contains a NUL byte"}
	}
	return nil
}

// checkTime validates a time that is set: years 1 to 9999, which every
// database stores and SQLite's text timestamps still sort correctly.
func checkTime(field string, t time.Time) error {
	if t.IsZero() {
		return nil
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return &InputError{Field: field, Reason: "year outside 1 to 9999"}
	}
	return nil
}

// checkOptionalID validates an optional UUID: nil, or not the zero UUID.
func checkOptionalID(field string, id *uuid.UUID) error {
	if id == nil {
		return nil
	}
	return checkID(field, *id)
}

// checkOptionalTime validates an optional time: nil, or a time that is
// set, as checkTime accepts it. A pointer to the zero time is refused as
// the likely mistake it is: nil says "not known".
func checkOptionalTime(field string, t *time.Time) error {
	switch {
	case t == nil:
		return nil
	case t.IsZero():
		return &InputError{Field: field, Reason: "must not be the zero time; leave it nil when not known"}
	}
	return checkTime(field, *t)
}

// checkOptionalCount validates an optional count: nil, or not negative.
func checkOptionalCount(field string, n *int64) error {
	if n == nil {
		return nil
	}
	return checkCount(field, *n)
}

// checkTokenParts validates that the cache and reasoning counts are parts
// of the input and output counts, as the OpenTelemetry GenAI convention
// has them (see InvocationResult). It catches the usual mistake of
// recording Anthropic's input_tokens, which leaves the cached ones out.
// The counts are not negative when it runs.
func checkTokenParts(res InvocationResult) error {
	switch {
	case res.CacheReadInputTokens > res.InputTokens:
		return &InputError{Field: "InvocationResult.CacheReadInputTokens", Reason: "more than InputTokens, which includes the cached input tokens"}
	case res.CacheWriteInputTokens > res.InputTokens-res.CacheReadInputTokens:
		return &InputError{Field: "InvocationResult.CacheWriteInputTokens", Reason: "with CacheReadInputTokens, more than InputTokens, which includes the cached input tokens"}
	case res.ReasoningOutputTokens > res.OutputTokens:
		return &InputError{Field: "InvocationResult.ReasoningOutputTokens", Reason: "more than OutputTokens, which includes the reasoning tokens"}
	}
	return nil
}

func checkCount(field string, n int64) error {
	if n < 0 {
		return &InputError{Field: field, Reason: "must not be negative"}
	}
	return nil
}

// encodeJSON returns the canonical JSON of v, or nil (SQL NULL) for a nil v.
func encodeJSON(field string, v any) (jsonValue, error) {
	if v == nil {
		return nil, nil
	}
	b, err := canonjson.Marshal(v)
	if err != nil {
		return nil, jsonInputError(field, err)
	}
	return b, nil
}

// encodeArray returns the canonical JSON array of vs; nil encodes as [].
func encodeArray(field string, vs []any) (jsonValue, error) {
	if vs == nil {
		return jsonValue("[]"), nil
	}
	return encodeJSON(field, vs)
}

// encodeSet returns the canonical JSON array of the distinct values of vs,
// in order of first appearance. Each value is encoded and parsed once: the
// array's limits, which its values may keep one by one but not in sum
// (such as many short numbers that PostgreSQL writes out in full), are
// checked from what canonjson learned of each value, as Canonicalize
// would check the array's text.
func encodeSet(field string, vs []any) (jsonValue, error) {
	var array canonjson.Array
	seen := make(map[string]struct{}, len(vs))
	for i, v := range vs {
		value, err := canonjson.MarshalValue(v)
		if err != nil {
			return nil, jsonInputError(field+"["+strconv.Itoa(i)+"]", err)
		}
		if _, dup := seen[string(value.JSON)]; dup {
			continue
		}
		seen[string(value.JSON)] = struct{}{}
		array.Append(value)
		if array.Len() > canonjson.MaxBytes {
			return nil, &InputError{Field: field, Reason: "larger than " + strconv.Itoa(canonjson.MaxBytes) + " bytes"}
		}
	}
	out, err := array.Close()
	if err != nil {
		return nil, jsonInputError(field, err)
	}
	return out, nil
}

func jsonInputError(field string, err error) error {
	var cerr *canonjson.Error
	if errors.As(err, &cerr) {
		return &InputError{Field: field, Reason: cerr.Error()}
	}
	return &InputError{Field: field, Reason: err.Error()}
}

// firstErr returns the first non-nil of errs.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
