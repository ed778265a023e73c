package repository_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/agentpipeline/persistence/repository"
)

func TestFormatNanoUSD(t *testing.T) {
	t.Parallel()
	for nano, want := range map[int64]string{
		0:             "0.000000000",
		1:             "0.000000001",
		67_500_000:    "0.067500000",
		1_000_000_000: "1.000000000",
		-1_500:        "-0.000001500",
		math.MaxInt64: "9223372036.854775807",
		math.MinInt64: "-9223372036.854775808",
	} {
		assert.Equal(t, want, repository.FormatNanoUSD(nano), nano)
	}
}
