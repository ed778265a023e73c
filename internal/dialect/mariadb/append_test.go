package mariadb_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// withParams returns a change of the driver's configuration that adds
// params to the DSN: session variables the driver sets on each connection
// it opens (never server-wide), or its own parameters.
func withParams(params map[string]string) func(*mysql.Config) {
	return func(c *mysql.Config) {
		if c.Params == nil {
			c.Params = map[string]string{}
		}
		for k, v := range params {
			c.Params[k] = v
		}
	}
}

// TestAppendUnderStrictAllTables appends memories in the strict modes
// that refuse a variable set past its range (error 1231) where MariaDB's
// default STRICT_TRANS_TABLES cuts it down: the append raises
// group_concat_max_len within it.
func TestAppendUnderStrictAllTables(t *testing.T) {
	for _, mode := range []string{"TRADITIONAL", "STRICT_ALL_TABLES"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			db := dbtest.MariaDBWith(t, withParams(map[string]string{"sql_mode": "'" + mode + "'"}))
			require.NoError(t, migrate.Up(t.Context(), db))
			repo := repository.New(db)
			run, err := repo.CreateFeatureRun(t.Context(), repository.NewFeatureRun{ID: uuid.New(), Phase: "plan", Memories: []any{"first"}})
			require.NoError(t, err)
			// Longer than group_concat_max_len's default of 1 MiB.
			long := strings.Repeat("m", 3<<20)
			require.NoError(t, repo.UpdateFeatureRunMemories(t.Context(), run, []any{"second", long}))
			require.NoError(t, repo.UpdateFeatureRunMemories(t.Context(), run, []any{"second", "third"}))
			got, err := repo.GetFeatureRun(t.Context(), run)
			require.NoError(t, err)
			var memories []any
			require.NoError(t, json.Unmarshal(got.Memories, &memories))
			assert.Equal(t, []any{"first", "second", long, "third"}, memories)
		})
	}
}
