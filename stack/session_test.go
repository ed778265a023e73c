package stack_test

import (
	"bytes"
	"encoding/json"
	"log"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// TestPrepareStmt runs every path of every write on a GORM that prepares
// its statements.
func TestPrepareStmt(t *testing.T) {
	t.Parallel()
	eachDatabase(t, func(t *testing.T, d *database) {
		repo := repository.New(d.open(&gorm.Config{PrepareStmt: true}))
		each(t, func(t *testing.T, _ write, p path, prepare func(*fixture) call) {
			checkOutcome(t, p, prepare(d.fixture(t))(d.ctx, repo))
		})
	})
}

// TestDryRun checks that a Repository on a DryRun session writes nothing
// and answers as a first, successful call does.
func TestDryRun(t *testing.T) {
	t.Parallel()
	eachDatabase(t, func(t *testing.T, d *database) {
		db := d.open(&gorm.Config{})
		dry := repository.New(db.Session(&gorm.Session{DryRun: true}))
		each(t, func(t *testing.T, _ write, p path, prepare func(*fixture) call) {
			c := prepare(d.fixture(t))
			before := dump(t, db)
			d.pool.take()
			require.NoError(t, c(d.ctx, dry))
			assert.Empty(t, d.pool.take(), "nothing is sent")
			assert.Equal(t, before, dump(t, db), "nothing is written")
		})
	})
}

// dump returns every row of the five tables.
func dump(t testing.TB, db *gorm.DB) string {
	t.Helper()
	var all struct {
		Runs        []models.FeatureRun
		Sandboxes   []models.Sandbox
		Phases      []models.PhaseResult
		Invocations []models.AgentInvocation
		CTAs        []models.CTAEvent
	}
	for _, dest := range []any{&all.Runs, &all.Sandboxes, &all.Phases, &all.Invocations, &all.CTAs} {
		require.NoError(t, db.Order("id").Find(dest).Error)
	}
	b, err := json.Marshal(all)
	require.NoError(t, err)
	return string(b)
}

// TestParameterizedQueries checks that a logger with ParameterizedQueries
// logs the statements of every write without their values.
func TestParameterizedQueries(t *testing.T) {
	t.Parallel()
	for _, parameterized := range []bool{true, false} {
		t.Run(map[bool]string{true: "parameterized", false: "with values"}[parameterized], func(t *testing.T) {
			eachDatabase(t, func(t *testing.T, d *database) {
				var buf bytes.Buffer
				l := logger.New(log.New(&buf, "", 0), logger.Config{LogLevel: logger.Info, ParameterizedQueries: parameterized})
				repo := repository.New(d.open(&gorm.Config{Logger: l}))
				each(t, func(t *testing.T, _ write, p path, prepare func(*fixture) call) {
					c := prepare(d.fixture(t))
					buf.Reset()
					checkOutcome(t, p, c(d.ctx, repo))
					logged := buf.String()
					require.NotEmpty(t, logged, "every statement is logged")
					if !parameterized {
						return
					}
					// Values a random database name, which MariaDB's
					// errors quote, cannot hold: "e2b" alone is hex.
					for _, value := range []string{secret, "e2b-vm", "coder", "approval", "review", "learned", `{"k":"v"}`} {
						assert.NotContains(t, logged, value)
					}
				})
				if !parameterized {
					// The same writes do log their values otherwise, so the
					// check above can see them.
					each(t, func(t *testing.T, w write, p path, prepare func(*fixture) call) {
						if w.name != "CompleteCTAEvent" || p != happy {
							t.SkipNow()
						}
						buf.Reset()
						require.NoError(t, prepare(d.fixture(t))(d.ctx, repo))
						assert.Contains(t, buf.String(), secret)
					})
				}
			})
		})
	}
}

// TestNowFunc checks that timestamps come from the db's NowFunc, truncated
// to microseconds.
func TestNowFunc(t *testing.T) {
	t.Parallel()
	at := time.Date(2031, 2, 3, 4, 5, 6, 789_123_456, time.FixedZone("UTC+2", 2*3600))
	eachDatabase(t, func(t *testing.T, d *database) {
		repo := repository.New(d.open(&gorm.Config{NowFunc: func() time.Time { return at }}))
		want := at.Truncate(time.Microsecond)
		run, err := repo.CreateFeatureRun(d.ctx, repository.NewFeatureRun{Phase: "plan"})
		require.NoError(t, err)
		got, err := repo.GetFeatureRun(d.ctx, run)
		require.NoError(t, err)
		assert.True(t, want.Equal(got.CreatedAt), "created_at %v is NowFunc's %v", got.CreatedAt, want)
		assert.True(t, want.Equal(got.UpdatedAt), "updated_at %v", got.UpdatedAt)

		require.NoError(t, repo.CreateSandboxRecord(d.ctx, repository.NewSandbox{ID: "sbx", FeatureRunID: run}))
		require.NoError(t, repo.UpdateSandboxStatus(d.ctx, "sbx", models.SandboxRunning))
		sbx, err := repo.GetSandbox(d.ctx, "sbx")
		require.NoError(t, err)
		require.NotNil(t, sbx.StartedAt)
		assert.True(t, want.Equal(*sbx.StartedAt), "started_at %v", *sbx.StartedAt)

		require.NoError(t, repo.CompleteFeatureRun(d.ctx, run))
		got, err = repo.GetFeatureRun(d.ctx, run)
		require.NoError(t, err)
		require.NotNil(t, got.CompletedAt)
		assert.True(t, want.Equal(*got.CompletedAt), "completed_at %v", *got.CompletedAt)
	})
}

// TestScopesIgnored gives New a handle carrying each query scope a caller
// may have on theirs: the Repository must behave as on a plain handle.
func TestScopesIgnored(t *testing.T) {
	t.Parallel()
	scopes := map[string]func(*gorm.DB) *gorm.DB{
		"Where":    func(db *gorm.DB) *gorm.DB { return db.Where("1 = 0") },
		"Not":      func(db *gorm.DB) *gorm.DB { return db.Not("1 = 1") },
		"Or":       func(db *gorm.DB) *gorm.DB { return db.Where("1 = 0").Or("1 = 0") },
		"Omit":     func(db *gorm.DB) *gorm.DB { return db.Omit("Metadata", "Memories") },
		"Select":   func(db *gorm.DB) *gorm.DB { return db.Select("id") },
		"Limit":    func(db *gorm.DB) *gorm.DB { return db.Limit(1) },
		"Offset":   func(db *gorm.DB) *gorm.DB { return db.Offset(5) },
		"Order":    func(db *gorm.DB) *gorm.DB { return db.Order("id DESC") },
		"Group":    func(db *gorm.DB) *gorm.DB { return db.Group("id") },
		"Joins":    func(db *gorm.DB) *gorm.DB { return db.Joins("JOIN nowhere ON 1 = 0") },
		"Preload":  func(db *gorm.DB) *gorm.DB { return db.Preload("Nothing") },
		"Scopes":   func(db *gorm.DB) *gorm.DB { return db.Scopes(func(db *gorm.DB) *gorm.DB { return db.Where("1 = 0") }) },
		"Unscoped": func(db *gorm.DB) *gorm.DB { return db.Unscoped() },
		"Table":    func(db *gorm.DB) *gorm.DB { return db.Table("nowhere") },
		"Model":    func(db *gorm.DB) *gorm.DB { return db.Model(&models.Sandbox{}) },
		"Clauses": func(db *gorm.DB) *gorm.DB {
			return db.Clauses(clause.Where{Exprs: []clause.Expression{clause.Expr{SQL: "1 = 0"}}})
		},
	}
	eachDatabase(t, func(t *testing.T, d *database) {
		db := d.open(&gorm.Config{})
		for name, scope := range scopes {
			t.Run(name, func(t *testing.T) {
				repo := repository.New(scope(db))
				run, err := repo.CreateFeatureRun(d.ctx, repository.NewFeatureRun{ID: uuid.New(), Phase: "plan", Memories: []any{"m"}, Metadata: map[string]any{"k": "v"}})
				require.NoError(t, err)
				for _, phase := range []string{"plan", "build"} {
					_, err := repo.CreatePhaseResult(d.ctx, repository.NewPhaseResult{ID: uuid.New(), FeatureRunID: run, Phase: phase})
					require.NoError(t, err)
				}
				require.NoError(t, repo.UpdateFeatureRunMemories(d.ctx, run, []any{"n"}))
				require.NoError(t, repo.CompleteFeatureRun(d.ctx, run))

				got, err := repo.GetFeatureRun(d.ctx, run)
				require.NoError(t, err)
				assert.JSONEq(t, `{"k":"v"}`, string(got.Metadata))
				assert.JSONEq(t, `["m","n"]`, string(got.Memories))
				assert.Equal(t, models.RunCompleted, got.Status)
				tl, err := repo.RunTimeline(d.ctx, run)
				require.NoError(t, err)
				assert.Len(t, tl.Phases, 2)
				page, err := repo.ListFeatureRuns(d.ctx, repository.RunFilter{}, repository.Page{})
				require.NoError(t, err)
				assert.NotEmpty(t, page.Runs)
				usage, err := repo.RunUsage(d.ctx, run)
				require.NoError(t, err)
				assert.Zero(t, usage.Invocations)
			})
		}
	})
}

// TestTablePrefixIgnored checks that the package's tables keep their
// names under a NamingStrategy with a TablePrefix: the models name their
// tables themselves.
func TestTablePrefixIgnored(t *testing.T) {
	t.Parallel()
	eachDatabase(t, func(t *testing.T, d *database) {
		db := d.open(&gorm.Config{NamingStrategy: schema.NamingStrategy{TablePrefix: "app_"}})
		require.NoError(t, migrate.Up(d.ctx, db))
		tables, err := db.Migrator().GetTables()
		require.NoError(t, err)
		for _, table := range tables {
			assert.False(t, strings.HasPrefix(table, "app_"), "table %s", table)
		}
		repo := repository.New(db)
		each(t, func(t *testing.T, _ write, p path, prepare func(*fixture) call) {
			checkOutcome(t, p, prepare(d.fixture(t))(d.ctx, repo))
		})
	})
}
