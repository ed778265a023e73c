package mariadb_test

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	gormmysql "gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/dialect/mariadb"
	"github.com/agentpipeline/persistence/internal/dialect/mariadb/mariadbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

func TestSupported(t *testing.T) {
	for _, version := range []string{"10.11.19-MariaDB-0+deb12u1", "10.11.0-MariaDB", "11.4.2-MariaDB-ubu2404", "12.0.1-MariaDB"} {
		assert.NoError(t, mariadb.Supported(version), version)
	}
	for _, version := range []string{"8.0.36", "8.4.0-commercial", "5.7.44-log", "10.6.16-MariaDB", "10.10.7-MariaDB-1:10.10.7", "9.6.1-MariaDB", ""} {
		assert.ErrorIs(t, mariadb.Supported(version), mariadb.ErrUnsupportedServer, version)
	}
}

// TestUpRefusesSettingsThatLoseData opens a fresh database with settings
// under which the package would store or read something other than what
// it was given, and checks that migrate.Up refuses them, naming the
// setting, and creates no table.
func TestUpRefusesSettingsThatLoseData(t *testing.T) {
	admin := dbtest.MariaDBServer(t)
	for name, c := range map[string]struct {
		set  func(*mysql.Config)
		want string
	}{
		"without parseTime": {func(c *mysql.Config) { c.ParseTime = false }, "parseTime=true"},
		"latin1":            {func(c *mysql.Config) { c.Params = map[string]string{"charset": "latin1"} }, "charset=utf8mb4"},
		"utf8mb3":           {func(c *mysql.Config) { c.Params = map[string]string{"charset": "utf8mb3"} }, "charset=utf8mb4"},
		"not strict":        {func(c *mysql.Config) { c.Params = map[string]string{"sql_mode": "'NO_ENGINE_SUBSTITUTION'"} }, "STRICT_TRANS_TABLES"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := mariadb.Config(dbtest.MariaDBDSN())
			require.NoError(t, err)
			cfg.DBName = mariadbtest.Database(t, admin)
			c.set(cfg)
			sqlDB, err := sql.Open("mysql", cfg.FormatDSN())
			require.NoError(t, err)
			t.Cleanup(func() { _ = sqlDB.Close() })
			db, err := gorm.Open(gormmysql.New(gormmysql.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
			require.NoError(t, err)
			err = migrate.Up(t.Context(), db)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			var tables int
			require.NoError(t, db.Raw("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()").Scan(&tables).Error)
			assert.Zero(t, tables, "nothing is created")
		})
	}
}

// TestUpCompletesAnInterruptedUp stops Up after each of its statements in
// turn, those of every numbered file (the tables, then the columns added
// since), as a crash or a lost connection would (MariaDB commits each DDL
// statement, so what was sent stays), and checks that the next Up makes
// the schema a single Up makes, and that an Up after it sends no DDL.
func TestUpCompletesAnInterruptedUp(t *testing.T) {
	whole := dbtest.MariaDB(t)
	require.NoError(t, migrate.Up(t.Context(), whole))
	want := dbtest.Catalog(t, whole)

	files, err := filepath.Glob(filepath.Join("..", "..", "..", "migrate", "sql", "mariadb", "*.up.sql"))
	require.NoError(t, err)
	slices.Sort(files)
	var stmts []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, s := range strings.Split(string(b), ";\n") {
			if ddl.MatchString(stripComments(s)) {
				stmts = append(stmts, s)
			}
		}
	}
	require.GreaterOrEqual(t, len(stmts), 5+2, "one statement a table, then one a column added since")
	for sent := range len(stmts) {
		t.Run(fmt.Sprintf("after %d of %d", sent, len(stmts)), func(t *testing.T) {
			db := dbtest.MariaDB(t)
			for _, s := range stmts[:sent] {
				require.NoError(t, db.Exec(s).Error)
			}
			require.NoError(t, migrate.Up(t.Context(), db))
			assert.Equal(t, want, dbtest.Catalog(t, db))

			rec := dbtest.RecorderOf(db)
			rec.Start()
			require.NoError(t, migrate.Up(t.Context(), db))
			sentAgain, _ := rec.Stop()
			require.NotEmpty(t, sentAgain, "the recorder saw Up")
			for _, s := range sentAgain {
				assert.NotRegexp(t, ddl, s, "an up-to-date schema gets no DDL")
			}
		})
	}
}

var ddl = regexp.MustCompile(`(?i)^\s*(CREATE|ALTER|DROP)\b`)

// stripComments drops the lines of s that are SQL comments.
func stripComments(s string) string {
	var kept []string
	for line := range strings.SplitSeq(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}

// TestDeadlockedStatementIsSentAgain fails the first two creates with the
// error of a statement InnoDB rolled back to break a deadlock, as a
// callback on the Create chain (ahead of GORM's own) can: outside a
// transaction the create is sent again and succeeds; inside one, where
// InnoDB has rolled the whole transaction back, the error is returned.
func TestDeadlockedStatementIsSentAgain(t *testing.T) {
	db := dbtest.MariaDB(t)
	require.NoError(t, migrate.Up(t.Context(), db))
	var failures, sent int
	require.NoError(t, db.Callback().Create().Before("gorm:create").Register("test:deadlock", func(tx *gorm.DB) {
		sent++
		if failures > 0 {
			failures--
			_ = tx.AddError(&mysql.MySQLError{Number: 1213, Message: "Deadlock found when trying to get lock; try restarting transaction"})
		}
	}))
	repo := repository.New(db)

	failures = 2
	id, err := repo.CreateFeatureRun(t.Context(), repository.NewFeatureRun{ID: uuid.New(), Phase: "plan"})
	require.NoError(t, err)
	assert.Equal(t, 3, sent, "sent again after each deadlock")
	_, err = repo.GetFeatureRun(t.Context(), id)
	require.NoError(t, err)

	failures, sent = 1, 0
	err = repo.Transaction(t.Context(), func(tx *repository.Repository) error {
		_, err := tx.CreateFeatureRun(t.Context(), repository.NewFeatureRun{ID: uuid.New(), Phase: "plan"})
		return err
	})
	var myErr *mysql.MySQLError
	require.ErrorAs(t, err, &myErr)
	assert.Equal(t, uint16(1213), myErr.Number)
	assert.Equal(t, 1, sent, "not sent again inside a transaction")
}

// TestMemoriesPastMaxAllowedPacket appends memories until the run's array
// would pass max_allowed_packet, which MariaDB's append builds as one
// string: the append that would pass it is refused as ErrInvalidInput,
// naming the memories, and leaves them as they were.
func TestMemoriesPastMaxAllowedPacket(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping under -short: writes max_allowed_packet of memories")
	}
	db := dbtest.MariaDB(t)
	require.NoError(t, migrate.Up(t.Context(), db))
	var limit int
	require.NoError(t, db.Raw("SELECT @@max_allowed_packet").Scan(&limit).Error)
	repo := repository.New(db)
	run, err := repo.CreateFeatureRun(t.Context(), repository.NewFeatureRun{ID: uuid.New(), Phase: "plan"})
	require.NoError(t, err)
	value := strings.Repeat("m", 4<<20)
	var stored []byte
	for i := 0; ; i++ {
		require.Less(t, i, limit/len(value)+2, "an append past max_allowed_packet was accepted")
		before, err := repo.GetFeatureRun(t.Context(), run)
		require.NoError(t, err)
		stored = before.Memories
		err = repo.UpdateFeatureRunMemories(t.Context(), run, []any{fmt.Sprint(i, value)})
		if err == nil {
			continue
		}
		var inErr *repository.InputError
		require.ErrorAs(t, err, &inErr)
		assert.ErrorIs(t, err, repository.ErrInvalidInput)
		assert.Equal(t, "memories", inErr.Field)
		break
	}
	after, err := repo.GetFeatureRun(t.Context(), run)
	require.NoError(t, err)
	assert.Len(t, after.Memories, len(stored), "the refused append changed nothing")
}

// TestGuardedUpdatesReadOnlyThePrimaryKey checks that MariaDB's optimizer
// considers no index but those on the row's ID for any transition's
// UPDATE, fenced or not: one it could use for the guard it weighs at every
// execution, which made a fenced move cost a tenth more than an unfenced
// one (see Dialect.Guard).
func TestGuardedUpdatesReadOnlyThePrimaryKey(t *testing.T) {
	db := dbtest.MariaDB(t)
	ctx := t.Context()
	require.NoError(t, migrate.Up(ctx, db))
	type sent struct {
		sql  string
		vars []any
	}
	var updates []sent
	require.NoError(t, db.Callback().Raw().Before("gorm:raw").Register("test:capture", func(tx *gorm.DB) {
		if q := tx.Statement.SQL.String(); strings.HasPrefix(q, "UPDATE ") {
			updates = append(updates, sent{q, slices.Clone(tx.Statement.Vars)})
		}
	}))
	repo := repository.New(db)
	for _, r := range []*repository.Repository{repo, repo.AtStep(1)} {
		run, err := r.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan"})
		require.NoError(t, err)
		require.NoError(t, r.UpdateFeatureRunPhase(ctx, run, "implement"))
		require.NoError(t, r.UpdateFeatureRunPhase(ctx, run, "implement"))
		sandbox := "sbx-" + uuid.NewString()
		require.NoError(t, r.CreateSandboxRecord(ctx, repository.NewSandbox{ID: sandbox, FeatureRunID: run}))
		for _, to := range []models.SandboxStatus{models.SandboxRunning, models.SandboxPaused, models.SandboxRunning, models.SandboxStopped} {
			require.NoError(t, r.UpdateSandboxStatus(ctx, sandbox, to))
		}
		phase, err := r.CreatePhaseResult(ctx, repository.NewPhaseResult{FeatureRunID: run, Phase: "plan"})
		require.NoError(t, err)
		require.NoError(t, r.PassPhaseResult(ctx, phase, nil))
		invocation, err := r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: run, Agent: "coder"})
		require.NoError(t, err)
		require.NoError(t, r.CompleteAgentInvocation(ctx, invocation, repository.InvocationResult{}))
		cta := "cta-" + uuid.NewString()
		require.NoError(t, r.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: cta, FeatureRunID: run}))
		require.NoError(t, r.TimeoutCTAEvent(ctx, cta))
		require.NoError(t, r.CompleteFeatureRun(ctx, run))
	}
	require.NotEmpty(t, updates)
	// The indexes whose first column is id, by table: those the
	// optimizer may weigh for the row's ID.
	var onID []string
	require.NoError(t, db.Raw(`SELECT CONCAT(table_name, '.', index_name) FROM information_schema.statistics
		WHERE table_schema = DATABASE() AND seq_in_index = 1 AND column_name = 'id'`).Scan(&onID).Error)
	idIndexes := map[string]bool{}
	for _, i := range onID {
		idIndexes[i] = true
	}
	fenced := 0
	for _, u := range updates {
		if strings.Contains(u.sql, "step = ") {
			fenced++
		}
		rows, err := db.Raw("EXPLAIN "+u.sql, u.vars...).Rows()
		require.NoError(t, err)
		var others []string
		for rows.Next() {
			var plan map[string]any
			require.NoError(t, db.ScanRows(rows, &plan))
			for _, key := range strings.Split(fmt.Sprint(plan["possible_keys"]), ",") {
				if !idIndexes[fmt.Sprint(plan["table"])+"."+key] {
					others = append(others, key)
				}
			}
		}
		require.NoError(t, rows.Err())
		require.NoError(t, rows.Close())
		assert.Empty(t, others, "indexes the optimizer weighs for the guard of\n%s", u.sql)
	}
	assert.Positive(t, fenced, "no fenced move was sent")
}
