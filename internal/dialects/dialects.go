// Package dialects lists the databases the package supports, each a
// dialect.Dialect in a package of its own.
package dialects

import (
	"fmt"
	"strings"

	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dialect"
	"github.com/agentpipeline/persistence/internal/dialect/mariadb"
	"github.com/agentpipeline/persistence/internal/dialect/postgres"
	"github.com/agentpipeline/persistence/internal/dialect/sqlite"
)

// All lists the supported databases. Supporting another is a package
// beside internal/dialect/postgres, with its test opener in a test-only
// package beneath it, and one more line here and in dbtest.Tests: the
// tests' list is apart so that programs link no test code.
var All = []*dialect.Dialect{
	&sqlite.Dialect,
	&postgres.Dialect,
	&mariadb.Dialect,
}

// Of returns the Dialect of db's database, or an error naming it when it
// is not supported.
func Of(db *gorm.DB) (*dialect.Dialect, error) {
	name := db.Dialector.Name()
	names := make([]string, len(All))
	for i, d := range All {
		if d.GORMName == name {
			return d, nil
		}
		names[i] = d.Name
	}
	return nil, fmt.Errorf("database %q is not supported (use %s)", name, strings.Join(names, ", "))
}
