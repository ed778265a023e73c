package stack_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/plugin/dbresolver"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// TestReplicaNeverDecidesAWrite puts the Repository behind dbresolver with
// a replica that lags as far as a replica can: migrated, without a row.
// Every write must answer on each path exactly as it does without the
// resolver, so the reads that decide a write's outcome go to the primary.
func TestReplicaNeverDecidesAWrite(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.All() {
		t.Run(kind.Name, func(t *testing.T) {
			t.Parallel()
			d := openDatabase(t, kind)
			replica := kind.Open(t)
			require.NoError(t, migrate.Up(t.Context(), replica))
			replicaPool, err := replica.DB()
			require.NoError(t, err)

			db := d.open(&gorm.Config{})
			require.NoError(t, db.Use(dbresolver.Register(dbresolver.Config{
				Replicas: []gorm.Dialector{dbtest.TestOf(d.dialect).Dialector(replicaPool)},
			})))
			resolved := repository.New(db)

			each(t, func(t *testing.T, w write, p path, prepare func(*fixture) call) {
				without := outcome(prepare(d.fixture(t))(d.ctx, d.plain))
				with := outcome(prepare(d.fixture(t))(d.ctx, resolved))
				require.Equal(t, without, with, "the resolver changes no answer")
			})

			// The resolver does route reads: a getter may use the replica.
			id, err := d.plain.CreateFeatureRun(d.ctx, repository.NewFeatureRun{Phase: "plan"})
			require.NoError(t, err)
			_, err = resolved.GetFeatureRun(d.ctx, id)
			require.ErrorIs(t, err, repository.ErrNotFound, "the getter read the lagging replica")
		})
	}
}
