package migrate_test

import (
	"testing"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
)

// BenchmarkUp measures Up on PostgreSQL: on a schema it creates the tables
// of, and on an up-to-date one, which it only reads the catalog of. Each
// op of "created" gets a fresh schema, made outside the timer.
func BenchmarkUp(b *testing.B) {
	b.Run("postgres/created", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			db := dbtest.Postgres(b)
			b.StartTimer()
			if err := migrate.Up(b.Context(), db); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("postgres/up-to-date", func(b *testing.B) {
		db := dbtest.Postgres(b)
		if err := migrate.Up(b.Context(), db); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := migrate.Up(b.Context(), db); err != nil {
				b.Fatal(err)
			}
		}
	})
}
