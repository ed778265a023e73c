package migrate_test

import (
	"context"
	"fmt"

	_ "github.com/mattn/go-sqlite3"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/migrate"
)

// Opening a database and creating the schema. Up is idempotent: call it at
// every start, from as many processes as you like.
func ExampleUp() {
	ctx := context.Background()
	// Foreign keys must be on, or Up refuses the connection.
	db, err := gorm.Open(sqlite.Open("file::memory:?_foreign_keys=on"), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		panic(err)
	}
	sqlDB, _ := db.DB()
	sqlDB.SetMaxOpenConns(1) // every connection to :memory: is a database of its own
	defer sqlDB.Close()

	if err := migrate.Up(ctx, db); err != nil {
		panic(err)
	}
	if err := migrate.Up(ctx, db); err != nil { // a no-op
		panic(err)
	}
	tables, _ := db.Migrator().GetTables()
	fmt.Println(len(tables), "tables")
	// Output: 5 tables
}

// Without foreign keys, deleting a run would leave its children behind, so
// Up refuses such an SQLite connection.
func ExampleUp_foreignKeysOff() {
	db, err := gorm.Open(sqlite.Open("file::memory:"), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		panic(err)
	}
	fmt.Println(migrate.Up(context.Background(), db) != nil)
	// Output: true
}
