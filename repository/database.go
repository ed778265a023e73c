package repository

// Database names the database r works on as this module names it, the
// name of its folder of migrate/sql: "sqlite", "postgres" or "mariadb".
// GORM's Dialector.Name says "mysql" for MariaDB, which the package
// refuses (see [New]), so it cannot tell a user which server they are on.
// Database returns "" when the database is not supported, as every other
// method then returns an error.
func (r *Repository) Database() string {
	if r.dialect == nil {
		return ""
	}
	return r.dialect.Name
}
