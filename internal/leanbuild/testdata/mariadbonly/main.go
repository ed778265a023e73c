// Command mariadbonly is a program that uses the package on MariaDB
// alone: what the lean build test builds and lists.
package main

import (
	"context"
	"log"
	"os"

	"gorm.io/driver/mysql"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/repository"
)

func main() {
	db, err := gorm.Open(mysql.Open(os.Getenv("DATABASE_DSN")), &gorm.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := migrate.Up(context.Background(), db); err != nil {
		log.Fatal(err)
	}
	_ = repository.New(db)
}
