package citus_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

// BenchmarkRouted times single calls, one at a time, on plain PostgreSQL
// and through the Citus coordinator, in a tenant schema each, in the same
// run: on Citus each statement names a distributed schema's tables and is
// routed whole to the one worker that holds it. The test cluster commits
// without waiting for its disk (scripts/citus.sh), so PostgreSQL's
// connections do the same (synchronous_commit=off), for writes to compare.
// docs/citus-facts.md gives the figures.
//
//	go test -run '^$' -bench Routed -benchtime 2s ./citus/
func BenchmarkRouted(b *testing.B) {
	for _, target := range []struct {
		name string
		open func(testing.TB) *gorm.DB
	}{{"postgres", asyncCommit}, {"citus", dbtest.Citus}} {
		b.Run(target.name, func(b *testing.B) {
			db := target.open(b)
			schema := dbtest.TenantSchema(db)
			if schema == "" {
				// dbtest.Postgres' schema is the pool's search_path: name it
				// all the same, as a tenant Repository would.
				if err := db.Raw("SELECT current_schema()").Scan(&schema).Error; err != nil {
					b.Fatal(err)
				}
			}
			ctx := context.Background()
			if err := migrate.Up(ctx, db, migrate.InSchema(schema)); err != nil {
				b.Fatal(err)
			}
			repo := repository.New(db, repository.InSchema(schema))
			run, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: repository.StableID("bench", "run"), Phase: "plan"})
			if err != nil {
				b.Fatal(err)
			}
			// Warm the pool: a new connection's first distributed query
			// opens the coordinator's connection to the worker.
			for range 5 {
				if _, err := repo.GetFeatureRun(ctx, run); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("CreateFeatureRun", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					id := repository.StableID("bench", target.name, strconv.Itoa(i), uuid.NewString())
					if _, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{ID: id, Phase: "plan"}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("UpdateFeatureRunPhase", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					if err := repo.UpdateFeatureRunPhase(ctx, run, "phase-"+strconv.Itoa(i)); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("GetFeatureRun", func(b *testing.B) {
				for b.Loop() {
					if _, err := repo.GetFeatureRun(ctx, run); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("RunTimeline", func(b *testing.B) {
				for b.Loop() {
					if _, err := repo.RunTimeline(ctx, run); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkTenantSetup times what each test of the contract suite does
// first on Citus, against plain PostgreSQL: create a schema of its own,
// open a pool on it and bring it up to date with migrate.Up.
func BenchmarkTenantSetup(b *testing.B) {
	for _, target := range []struct {
		name string
		open func(testing.TB) *gorm.DB
	}{{"postgres", dbtest.Postgres}, {"citus", dbtest.Citus}} {
		b.Run(target.name, func(b *testing.B) {
			for b.Loop() {
				db := target.open(b)
				schema := dbtest.TenantSchema(db)
				if schema == "" {
					if err := db.Raw("SELECT current_schema()").Scan(&schema).Error; err != nil {
						b.Fatal(err)
					}
				}
				if err := migrate.Up(context.Background(), db, migrate.InSchema(schema)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// asyncCommit is dbtest.Postgres with synchronous_commit off on its
// connections, as the Citus test cluster has it.
func asyncCommit(t testing.TB) *gorm.DB {
	return dbtest.PostgresWithParams(t, map[string]string{"synchronous_commit": "off"})
}
