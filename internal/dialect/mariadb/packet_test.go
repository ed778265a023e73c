package mariadb_test

import (
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/canonjson"
	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// driverModes are the two ways go-sql-driver/mysql sends a statement's
// vars: bound to a prepared statement, in an execute packet, or written
// into the statement's text (interpolateParams=true).
var driverModes = map[string]func(*mysql.Config){
	"prepared":          func(*mysql.Config) {},
	"interpolateParams": func(c *mysql.Config) { c.InterpolateParams = true },
}

// TestWritesPastMaxAllowedPacket makes writes of values each within the
// package's limits whose statement, as the driver sends it, passes the
// server's max_allowed_packet, which the server refused with error 1153,
// dropping the connection: each is refused as an *InputError naming the
// argument at fault, or the arguments together when no one is, and
// writes nothing; the pool goes on working.
func TestWritesPastMaxAllowedPacket(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping under -short: sends max_allowed_packet of values")
	}
	for name, set := range driverModes {
		t.Run(name, func(t *testing.T) {
			db := dbtest.MariaDBWith(t, set)
			require.NoError(t, migrate.Up(t.Context(), db))
			var limit int
			require.NoError(t, db.Raw("SELECT @@max_allowed_packet").Row().Scan(&limit))
			// Two values of nearly half the limit pass it with the rest
			// of the statement; each is within the package's own limit.
			if limit > 2*canonjson.MaxBytes {
				t.Skipf("max_allowed_packet is %d: two values of at most %d bytes cannot pass it", limit, canonjson.MaxBytes)
			}
			half := limit/2 - 16
			memories := []any{strings.Repeat("m", half-4)} // ["m…"]
			metadata := strings.Repeat("x", half-2)        // "x…"
			repo := repository.New(db)

			requireTooLarge := func(err error, field string) {
				t.Helper()
				require.ErrorIs(t, err, repository.ErrInvalidInput)
				var inErr *repository.InputError
				require.ErrorAs(t, err, &inErr)
				assert.Equal(t, field, inErr.Field)
				assert.Contains(t, inErr.Reason, "max_allowed_packet")
				t.Log(err)
			}

			id := uuid.New()
			_, err := repo.CreateFeatureRun(t.Context(), repository.NewFeatureRun{ID: id, Phase: "plan", Memories: memories, Metadata: metadata})
			requireTooLarge(err, "NewFeatureRun")
			_, err = repo.GetFeatureRun(t.Context(), id)
			require.ErrorIs(t, err, repository.ErrNotFound, "nothing is written")

			run, err := repo.CreateFeatureRun(t.Context(), repository.NewFeatureRun{ID: uuid.New(), Phase: "plan", Metadata: metadata})
			require.NoError(t, err, "one of the values alone fits")
			// The append sends the new memories twice.
			requireTooLarge(repo.UpdateFeatureRunMemories(t.Context(), run, memories), "memories")
			got, err := repo.GetFeatureRun(t.Context(), run)
			require.NoError(t, err)
			assert.JSONEq(t, "[]", string(got.Memories), "nothing is appended")

			inv, err := repo.CreateAgentInvocation(t.Context(), repository.NewAgentInvocation{FeatureRunID: run, Agent: "coder"})
			require.NoError(t, err)
			requireTooLarge(repo.CompleteAgentInvocation(t.Context(), inv, repository.InvocationResult{Steps: memories, Output: metadata}), "InvocationResult")
			gotInv, err := repo.GetAgentInvocation(t.Context(), inv)
			require.NoError(t, err)
			assert.Equal(t, models.InvocationRunning, gotInv.Status, "nothing is completed")

			require.NoError(t, repo.CompleteAgentInvocation(t.Context(), inv, repository.InvocationResult{Output: metadata}), "one of the values alone fits")
		})
	}
}
