package repository_test

import (
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/canonjson"
	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// TestPacketLimitIsTheServers finds, on MariaDB, the largest create that
// the Repository sends, bound or written into the statement
// (interpolateParams=true), and checks that the server takes it and
// refuses one byte more: the Repository counts the packet as the driver
// sends it. When the Repository's limit is stale (the server's was
// lowered since it read it), the server's refusal, error 1153, which
// drops the connection, is an *InputError too and writes nothing, and the
// next write reads the limit again.
func TestPacketLimitIsTheServers(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping under -short: sends max_allowed_packet of values")
	}
	t.Parallel()
	for name, set := range map[string]func(*mysql.Config){
		"prepared":          func(*mysql.Config) {},
		"interpolateParams": func(c *mysql.Config) { c.InterpolateParams = true },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := dbtest.MariaDBWith(t, set)
			// A fixed clock, whose times the driver writes in full: a
			// statement's size does not depend on when it is sent.
			db.Config.NowFunc = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC) }
			require.NoError(t, migrate.Up(t.Context(), db))
			var limit int
			require.NoError(t, db.Raw("SELECT @@max_allowed_packet").Row().Scan(&limit))
			if limit > 2*canonjson.MaxBytes {
				t.Skipf("max_allowed_packet is %d: two values of at most %d bytes cannot pass it", limit, canonjson.MaxBytes)
			}
			repo := repository.New(db)
			// Each value is shorter than go-sql-driver/mysql's threshold
			// for sending a var apart (its maxAllowedPacket, 64 MiB, over
			// the statement's vars plus one: 8 MiB), which the Repository
			// counts in the statement all the same, so that the server
			// sees the statement as the Repository counts it.
			memories := []any{strings.Repeat("m", min(limit/2, canonjson.MaxBytes)-128)}
			create := func(id uuid.UUID, metadata int) error {
				_, err := repo.CreateFeatureRun(t.Context(), repository.NewFeatureRun{ID: id, Phase: "plan", Memories: memories, Metadata: strings.Repeat("x", metadata)})
				return err
			}
			// The largest metadata that fits, the first create made and
			// every other a replay of it, which the server parses all
			// the same.
			fits := uuid.New()
			rest := limit - len(memories[0].(string))
			lo, hi := rest-1024, min(rest, canonjson.MaxBytes-2)
			require.NoError(t, create(fits, lo))
			require.Error(t, create(fits, hi))
			for hi-lo > 1 {
				mid := (lo + hi) / 2
				if err := create(fits, mid); err == nil {
					lo = mid
				} else {
					require.ErrorIs(t, err, repository.ErrInvalidInput)
					require.NotContains(t, err.Error(), "was refused", "the Repository sent a write the server refused")
					hi = mid
				}
			}
			t.Logf("max_allowed_packet %d: the largest metadata that fits with %d bytes of memories is %d bytes", limit, len(memories[0].(string)), lo)

			// One byte more, sent as if the limit were larger: the
			// server refuses it, and closes the connection, which the
			// pool closes too, not to lend it before it sees it closed.
			sqlDB, err := db.DB()
			require.NoError(t, err)
			sqlDB.SetMaxIdleConns(0)
			repository.SetMaxPacket(repo, 1<<30)
			tooLarge := uuid.New()
			err = create(tooLarge, hi)
			sqlDB.SetMaxIdleConns(2)
			require.ErrorIs(t, err, repository.ErrInvalidInput)
			var inErr *repository.InputError
			require.ErrorAs(t, err, &inErr)
			assert.Equal(t, "NewFeatureRun", inErr.Field)
			assert.Contains(t, inErr.Reason, "was refused")
			assert.Contains(t, inErr.Reason, "Error 1153", "by the server")
			_, err = repo.GetFeatureRun(t.Context(), tooLarge)
			require.ErrorIs(t, err, repository.ErrNotFound, "nothing is written")

			// The refusal made the Repository read the limit again.
			err = create(tooLarge, hi)
			require.ErrorAs(t, err, &inErr)
			assert.NotContains(t, inErr.Reason, "was refused")
			require.NoError(t, create(uuid.New(), lo))
		})
	}
}

// TestLargeWritesOnPostgreSQLAndSQLite makes, on PostgreSQL and SQLite,
// writes that MariaDB refuses for their size as a whole, each value
// within the package's limits: they succeed, as the refusal is MariaDB's
// alone.
func TestLargeWritesOnPostgreSQLAndSQLite(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping under -short: writes 16 MiB")
	}
	t.Parallel()
	for name, open := range map[string]func(testing.TB) *gorm.DB{"sqlite": dbtest.SQLite, "postgres": dbtest.Postgres} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := open(t)
			require.NoError(t, migrate.Up(t.Context(), db))
			repo := repository.New(db)
			memories := []any{strings.Repeat("m", canonjson.MaxBytes-4)}
			metadata := strings.Repeat("x", canonjson.MaxBytes-2)
			run, err := repo.CreateFeatureRun(t.Context(), repository.NewFeatureRun{ID: uuid.New(), Phase: "plan", Memories: memories, Metadata: metadata})
			require.NoError(t, err)
			got, err := repo.GetFeatureRun(t.Context(), run)
			require.NoError(t, err)
			assert.Len(t, got.Memories, canonjson.MaxBytes)
			assert.Len(t, got.Metadata, canonjson.MaxBytes)

			other, err := repo.CreateFeatureRun(t.Context(), repository.NewFeatureRun{ID: uuid.New(), Phase: "plan"})
			require.NoError(t, err)
			require.NoError(t, repo.UpdateFeatureRunMemories(t.Context(), other, memories))
		})
	}
}
