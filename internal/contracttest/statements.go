package contracttest

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/repository"
)

var setStatement = regexp.MustCompile(`(?is)^\s*SET STATEMENT .*? FOR\s`)

// Statements tests that each write is one statement on its happy path:
// no transaction around it and no read before it.
func Statements(t *testing.T, open dbtest.Opener) {
	for _, w := range writes() {
		t.Run(w.name, func(t *testing.T) {
			e := setup(t, open)
			f := e.fixture()
			rec := dbtest.RecorderOf(e.db)

			rec.Start()
			require.NoError(t, w.call(e.ctx, e.repo, f))
			stmts, begins := rec.Stop()
			assert.Zero(t, begins, "no transaction is begun")
			require.Len(t, stmts, 1, "exactly one statement: %q", stmts)
			// MariaDB's SET STATEMENT … FOR sets a variable for the
			// statement that follows only.
			stmt := setStatement.ReplaceAllString(stmts[0], "")
			verb := strings.ToUpper(strings.Fields(stmt)[0])
			assert.Contains(t, []string{"INSERT", "UPDATE", "WITH"}, verb, "the statement writes: %s", stmts[0])
		})
	}

	t.Run("ReplayedCreateIsOneStatement", func(t *testing.T) {
		e := setup(t, open)
		in := repository.NewFeatureRun{ID: repository.StableID("replayed"), Phase: "plan"}
		_, err := e.repo.CreateFeatureRun(e.ctx, in)
		require.NoError(t, err)
		rec := dbtest.RecorderOf(e.db)
		rec.Start()
		_, err = e.repo.CreateFeatureRun(e.ctx, in)
		require.NoError(t, err)
		stmts, begins := rec.Stop()
		assert.Zero(t, begins)
		assert.Len(t, stmts, 1)
	})
}
