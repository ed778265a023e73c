package repository_test

import (
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// TestRetriesCitusEssentialConnectionFailure sends a write again when a
// Citus coordinator refused it with XX000 "failure on connection marked as
// essential", which it raises before any node commits: here a trigger
// raises it for the first n inserts, counted by a sequence, which a
// rollback does not reset. Inside a transaction the error aborted the
// transaction, and it is returned.
func TestRetriesCitusEssentialConnectionFailure(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := dbtest.Postgres(t)
	require.NoError(t, migrate.Up(ctx, db))
	failFirst := func(n int) {
		t.Helper()
		require.NoError(t, db.Exec(`DROP SEQUENCE IF EXISTS failures`).Error)
		require.NoError(t, db.Exec(`CREATE SEQUENCE failures`).Error)
		require.NoError(t, db.Exec(`CREATE OR REPLACE FUNCTION fail_essential() RETURNS trigger AS $$
BEGIN
	IF nextval('failures') <= `+strconv.Itoa(n)+` THEN
		RAISE EXCEPTION USING ERRCODE = 'XX000', MESSAGE = 'failure on connection marked as essential: 127.0.0.1:9701';
	END IF;
	RETURN NEW;
END $$ LANGUAGE plpgsql`).Error)
	}
	failFirst(2)
	require.NoError(t, db.Exec(`CREATE TRIGGER fail_essential BEFORE INSERT ON feature_runs FOR EACH ROW EXECUTE FUNCTION fail_essential()`).Error)
	repo := repository.New(db)

	id, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan"})
	require.NoError(t, err, "retried past two failures")
	run, err := repo.GetFeatureRun(ctx, id)
	require.NoError(t, err)
	require.Equal(t, id, run.ID)

	failFirst(1)
	err = repo.Transaction(ctx, func(tx *repository.Repository) error {
		_, err := tx.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan"})
		return err
	})
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr, "not retried inside a transaction")
	require.Equal(t, "XX000", pgErr.Code)
}
