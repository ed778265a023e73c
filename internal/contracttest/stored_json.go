package contracttest

import (
	"bytes"
	"encoding/json"
	"math/big"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/repository"
)

// StoredJSON tests what the package promises of the JSON it returns: JSON
// equal to what was given, numbers exact, in a form that may differ by
// database (PostgreSQL's jsonb orders keys its own way and spaces its
// output; SQLite returns the canonical form the package wrote).
func StoredJSON(t *testing.T, open dbtest.Opener) {
	e := setup(t, open)
	given := json.RawMessage(`{"b": 1, "aa": [2.50, 12345678901234567890123, -0.000001], "c": {"z": null, "y": "\u00e9"}}`)
	run, err := e.repo.CreateFeatureRun(e.ctx, repository.NewFeatureRun{Phase: "plan", Metadata: given})
	require.NoError(t, err)
	got, err := e.repo.GetFeatureRun(e.ctx, run)
	require.NoError(t, err)
	assert.JSONEq(t, string(given), string(got.Metadata))
	assert.True(t, jsonExactlyEqual(t, given, got.Metadata), "numbers keep every digit: %s", got.Metadata)
}

// jsonExactlyEqual reports whether a and b are equal JSON documents with
// numbers compared as exact decimals rather than float64s.
func jsonExactlyEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	return exactEqual(decodeExact(t, a), decodeExact(t, b))
}

func decodeExact(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	require.NoError(t, d.Decode(&v))
	return v
}

func exactEqual(a, b any) bool {
	switch a := a.(type) {
	case json.Number:
		b, ok := b.(json.Number)
		if !ok {
			return false
		}
		x, okx := new(big.Rat).SetString(a.String())
		y, oky := new(big.Rat).SetString(b.String())
		return okx && oky && x.Cmp(y) == 0
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !exactEqual(a[i], b[i]) {
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
			if !exactEqual(v, b[k]) {
				return false
			}
		}
		return true
	}
	return a == b
}
