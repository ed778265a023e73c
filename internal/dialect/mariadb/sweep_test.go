package mariadb_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/internal/workload"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/persistencetest"
	"github.com/agentpipeline/persistence/repository"
)

// setting is a connection or session setting of the sweep: how to open
// connections with it, and the setting a *SettingError names when the
// package refuses it ("" when it accepts it).
type setting struct {
	name    string
	set     func(*mysql.Config)
	session *gorm.Session
	refused string
}

// settings are the settings the sweep tries: session variables set
// through the DSN, never server-wide, and the driver's own parameters.
func settings() []setting {
	mode := func(m string) func(*mysql.Config) { return withParams(map[string]string{"sql_mode": "'" + m + "'"}) }
	return []setting{
		{name: "clientFoundRows=true", set: func(c *mysql.Config) { c.ClientFoundRows = true }},
		{name: "interpolateParams=true", set: func(c *mysql.Config) { c.InterpolateParams = true }},
		{name: "PrepareStmt (GORM)", set: func(*mysql.Config) {}, session: &gorm.Session{PrepareStmt: true}},
		{name: "maxAllowedPacket=0", set: func(c *mysql.Config) { c.MaxAllowedPacket = 0 }},
		{name: "multiStatements=true", set: func(c *mysql.Config) { c.MultiStatements = true }},
		{name: "loc=+05:30", set: func(c *mysql.Config) { c.Loc = time.FixedZone("IST", 5*3600+1800) }},
		{name: "time_zone=+09:00", set: withParams(map[string]string{"time_zone": "'+09:00'"})},
		{name: "collation_connection=utf8mb4_unicode_ci", set: withParams(map[string]string{"collation_connection": "'utf8mb4_unicode_ci'"})},
		{name: "tx_isolation=READ-COMMITTED", set: withParams(map[string]string{"tx_isolation": "'READ-COMMITTED'"})},
		{name: "tx_isolation=SERIALIZABLE", set: withParams(map[string]string{"tx_isolation": "'SERIALIZABLE'"})},
		{name: "innodb_lock_wait_timeout=1", set: withParams(map[string]string{"innodb_lock_wait_timeout": "1"})},
		{name: "sql_mode=TRADITIONAL", set: mode("TRADITIONAL")},
		{name: "sql_mode=STRICT_ALL_TABLES", set: mode("STRICT_ALL_TABLES")},
		{name: "sql_mode=ANSI,STRICT_TRANS_TABLES", set: mode("ANSI,STRICT_TRANS_TABLES")},
		{name: "sql_mode=ORACLE,STRICT_TRANS_TABLES", set: mode("ORACLE,STRICT_TRANS_TABLES")},
		{name: "sql_mode=STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES interpolateParams=true", set: func(c *mysql.Config) {
			mode("STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES")(c)
			c.InterpolateParams = true
		}},
		{name: "sql_mode=STRICT_TRANS_TABLES,PAD_CHAR_TO_FULL_LENGTH", set: mode("STRICT_TRANS_TABLES,PAD_CHAR_TO_FULL_LENGTH")},
		{name: "sql_mode=STRICT_TRANS_TABLES,EMPTY_STRING_IS_NULL", set: mode("STRICT_TRANS_TABLES,EMPTY_STRING_IS_NULL"), refused: "sql_mode"},
		{name: "sql_mode=NO_ENGINE_SUBSTITUTION", set: mode("NO_ENGINE_SUBSTITUTION"), refused: "sql_mode"},
		{name: "autocommit=0", set: withParams(map[string]string{"autocommit": "0"}), refused: "autocommit"},
		{name: "columnsWithAlias=true", set: func(c *mysql.Config) { c.ColumnsWithAlias = true }, refused: "columnsWithAlias"},
		{name: "parseTime=false", set: func(c *mysql.Config) { c.ParseTime = false }, refused: "parseTime"},
		{name: "charset=latin1", set: withParams(map[string]string{"charset": "latin1"}), refused: "charset"},
	}
}

// sweepClock is the clock of the sweep's runs, so that every run writes
// the same timestamps.
var sweepClock = time.Date(2026, 3, 4, 5, 6, 7, 891234000, time.UTC)

// outcome is what a workload leaves, and what the Repository's reads
// return of it, as JSON.
type outcome struct {
	snapshot persistencetest.Snapshot
	reads    map[string]string
}

// runWorkload migrates db, runs a generated workload on it, each step
// twice, then replays it from the start, and returns what it leaves.
func runWorkload(t *testing.T, db *gorm.DB) outcome {
	t.Helper()
	ctx := t.Context()
	db.Config.NowFunc = func() time.Time { return sweepClock }
	require.NoError(t, migrate.Up(ctx, db))
	repo := repository.New(db)
	steps := workload.Generate(18, "settings")
	for _, s := range steps {
		require.NoError(t, workload.Exec(ctx, repo, s, workload.InOrder))
		require.NoError(t, workload.Exec(ctx, repo, s, workload.InOrder))
	}
	for _, s := range steps {
		require.NoError(t, workload.Exec(ctx, repo, s, workload.Replay))
	}
	snapshot, err := persistencetest.ReadSnapshot(ctx, db, persistencetest.Exact())
	require.NoError(t, err)

	run := workload.RunID("settings")
	reads := map[string]string{}
	read := func(name string, v any, err error) {
		t.Helper()
		require.NoError(t, err, name)
		b, err := json.Marshal(v)
		require.NoError(t, err)
		reads[name] = string(b)
	}
	timeline, err := repo.RunTimeline(ctx, run)
	read("RunTimeline", timeline, err)
	for _, s := range timeline.Sandboxes {
		got, err := repo.GetSandbox(ctx, s.ID)
		read("GetSandbox "+s.ID, got, err)
	}
	for _, c := range timeline.CTAEvents {
		got, err := repo.GetCTAEvent(ctx, c.ID)
		read("GetCTAEvent "+c.ID, got, err)
	}
	got, err := repo.GetFeatureRun(ctx, run)
	read("GetFeatureRun", got, err)
	outline, err := repo.RunOutline(ctx, run)
	read("RunOutline", outline, err)
	usage, err := repo.RunUsage(ctx, run)
	read("RunUsage", usage, err)
	summaries, err := repo.SummarizeRuns(ctx, []uuid.UUID{run})
	read("SummarizeRuns", summaries, err)
	counts, err := repo.CountFeatureRuns(ctx, repository.RunFilter{}, 0)
	read("CountFeatureRuns", counts, err)
	ctas, err := repo.ListCTAEvents(ctx, repository.CTAFilter{Status: models.CTATimedOut}, repository.Page{Limit: 10})
	read("ListCTAEvents", ctas, err)
	page, err := repo.ListFeatureRuns(ctx, repository.RunFilter{}, repository.Page{Limit: 10})
	read("ListFeatureRuns", page, err)
	leaked, err := repo.LeakedSandboxes(ctx, time.Nanosecond)
	read("LeakedSandboxes", leaked, err)
	expired, err := repo.ExpireCTAEvents(ctx, sweepClock.AddDate(10, 0, 0), 10)
	read("ExpireCTAEvents", expired, err)
	return outcome{snapshot: snapshot, reads: reads}
}

// TestSettingsSweep opens connections with each of a list of settings:
// those the package refuses, migrate.Up refuses with a *SettingError
// naming them; under every other, a workload run with each step twice,
// then replayed from its start, leaves exactly the rows it leaves under
// the defaults, and every read returns the same.
func TestSettingsSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping under -short: runs a workload under each setting")
	}
	want := runWorkload(t, dbtest.MariaDB(t))
	t.Logf("under the defaults: %d rows, %d reads", want.snapshot.Rows(), len(want.reads))
	for _, s := range settings() {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			db := dbtest.MariaDBWith(t, s.set)
			if s.session != nil {
				db = db.Session(s.session)
			}
			if s.refused != "" {
				err := migrate.Up(t.Context(), db)
				var setErr *migrate.SettingError
				require.ErrorAs(t, err, &setErr)
				assert.Equal(t, s.refused, setErr.Setting)
				t.Logf("refused: %v", err)
				return
			}
			got := runWorkload(t, db)
			d := persistencetest.Diff(want.snapshot, got.snapshot)
			assert.Empty(t, d, "rows differ from the run under the defaults:\n%s", d.Describe("defaults", s.name, 5))
			assert.Equal(t, want.reads, got.reads, "the reads return what they return under the defaults")
		})
	}
}
