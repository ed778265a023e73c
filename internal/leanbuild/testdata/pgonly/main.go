// Command pgonly is a program that uses the package on PostgreSQL alone,
// as a service would: it is what the lean build test builds and lists.
package main

import (
	"context"
	"log"
	"os"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

func main() {
	db, err := gorm.Open(postgres.Open(os.Getenv("DATABASE_URL")), &gorm.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := migrate.Up(context.Background(), db); err != nil {
		log.Fatal(err)
	}
	_ = repository.New(db)
}
