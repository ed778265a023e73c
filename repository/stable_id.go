package repository

import (
	"encoding/binary"

	"github.com/google/uuid"
)

// stableIDNamespace is the UUIDv5 namespace of StableID. It is fixed forever:
// changing it would change every ID a workflow ever derived.
var stableIDNamespace = uuid.MustParse("6f1d7c2e-3c55-4a8e-9b0e-5d2a8f4c7e11")

// StableID derives a deterministic UUIDv5 from parts, so that a workflow step
// re-executed after a crash computes the same IDs as its first execution.
// Derive IDs from what identifies the work, such as the triggering event's ID
// and the step name, never from the clock or a random source.
//
// Each part is length-prefixed before hashing, so the boundaries between parts
// matter: StableID("a", "bc") differs from StableID("ab", "c"), and
// StableID("a", "") from StableID("a").
func StableID(parts ...string) uuid.UUID {
	n := 0
	for _, p := range parts {
		n += 8 + len(p)
	}
	buf := make([]byte, 0, n)
	for _, p := range parts {
		buf = binary.BigEndian.AppendUint64(buf, uint64(len(p)))
		buf = append(buf, p...)
	}
	return uuid.NewSHA1(stableIDNamespace, buf)
}
