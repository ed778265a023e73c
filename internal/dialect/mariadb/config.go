package mariadb

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// Config parses dsn, a mysql:// URL (mysql://user:password@host:port/db?
// params) or a go-sql-driver/mysql DSN (user:password@tcp(host:port)/db?
// params), into go-sql-driver/mysql's configuration, with parseTime on,
// which the package needs.
func Config(dsn string) (*mysql.Config, error) {
	if rest, ok := strings.CutPrefix(dsn, "mysql://"); ok {
		u, err := url.Parse("mysql://" + rest)
		if err != nil {
			return nil, fmt.Errorf("MariaDB URL: %w", err)
		}
		cfg := mysql.NewConfig()
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
		cfg.Net, cfg.Addr = "tcp", u.Host
		if u.Port() == "" {
			cfg.Addr = u.Hostname() + ":3306"
		}
		cfg.DBName = strings.TrimPrefix(u.Path, "/")
		// The query's parameters are the DSN's: let the driver read them.
		parsed, err := mysql.ParseDSN(cfg.FormatDSN() + "?" + u.RawQuery)
		if err != nil {
			return nil, fmt.Errorf("MariaDB URL: %w", err)
		}
		cfg = parsed
		cfg.ParseTime = true
		return cfg, nil
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("MariaDB DSN: %w", err)
	}
	cfg.ParseTime = true
	return cfg, nil
}

// DatetimePrecision is the precision GORM's dialector should be given:
// gorm.io/driver/mysql rounds GORM's NowFunc, and so every timestamp the
// repository writes, to its DefaultDatetimePrecision, milliseconds unless
// told otherwise, where the schema keeps microseconds.
var DatetimePrecision = 6
