package mariadb

import (
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/agentpipeline/persistence/internal/dialect"
)

// settingsSQL reads in one row what the package needs to know of a
// connection: the server's version, the session's autocommit, sql_mode,
// character set and max_allowed_packet, and a DATETIME, which comes back
// as a time.Time only with parseTime=true. The columns come from a derived
// table, which go-sql-driver/mysql names "s.version" and so on with
// columnsWithAlias=true; the last column is the statement's one var, which
// the server names "?" when it was bound to a prepared statement and by
// its text when the driver wrote it into the statement
// (interpolateParams=true).
const settingsSQL = `SELECT s.version, s.autocommit, s.sql_mode, s.charset, s.max_allowed_packet, s.datetime, ?
FROM (SELECT VERSION() AS version, @@autocommit AS autocommit, @@sql_mode AS sql_mode,
	@@character_set_connection AS charset, @@max_allowed_packet AS max_allowed_packet,
	CAST('2000-01-01' AS DATETIME(6)) AS datetime) AS s`

// settingsProbe is the var of settingsSQL.
const settingsProbe = "interpolated"

// settings are a connection's settings, as settingsSQL reads them.
type settings struct {
	version, sqlMode, charset string
	autocommit                bool
	maxPacket                 int
	// parseTime is whether DATETIME columns come back as times, aliased
	// whether column names carry their table (columnsWithAlias=true), and
	// interpolated whether the driver writes vars into the statement
	// (interpolateParams=true) rather than binding them.
	parseTime, aliased, interpolated bool
}

// readSettings reads the row of settingsSQL from rows, positioned on it.
func readSettings(rows *sql.Rows) (settings, error) {
	columns, err := rows.Columns()
	if err != nil {
		return settings{}, err
	}
	if len(columns) != 7 {
		return settings{}, errors.New("the settings query returned " + strconv.Itoa(len(columns)) + " columns")
	}
	var s settings
	var autocommit, maxPacket int64
	var datetime, probe any
	if err := rows.Scan(&s.version, &autocommit, &s.sqlMode, &s.charset, &maxPacket, &datetime, &probe); err != nil {
		return settings{}, err
	}
	s.autocommit = autocommit != 0
	s.maxPacket = int(maxPacket)
	_, s.parseTime = datetime.(time.Time)
	s.aliased = columns[0] != "version"
	s.interpolated = columns[6] != "?"
	return s, nil
}

// check returns an error for a server other than a MariaDB the package
// supports, and a *dialect.SettingError for a connection under whose
// settings the package would lose or change data, or read it wrong.
func (s settings) check() error {
	if err := Supported(s.version); err != nil {
		return err
	}
	mode := strings.Split(s.sqlMode, ",")
	switch {
	case !s.autocommit:
		return &dialect.SettingError{Setting: "autocommit", Value: "0",
			Reason: "each write outside a transaction would wait for a COMMIT that the package never sends, and be lost when its connection closes",
			Use:    "keep MariaDB's default autocommit=1: remove autocommit=0 from the DSN (or the server's autocommit and init_connect settings); group writes with Repository.Transaction instead"}
	case !contains(mode, "STRICT_TRANS_TABLES") && !contains(mode, "STRICT_ALL_TABLES"):
		return &dialect.SettingError{Setting: "sql_mode", Value: s.sqlMode,
			Reason: "it is not strict: MariaDB would store what does not fit as something else, with a warning, where the package needs the statement to fail",
			Use:    "keep MariaDB's default STRICT_TRANS_TABLES (or STRICT_ALL_TABLES, or TRADITIONAL) in the connection's sql_mode"}
	case contains(mode, "EMPTY_STRING_IS_NULL"):
		return &dialect.SettingError{Setting: "sql_mode", Value: s.sqlMode,
			Reason: "EMPTY_STRING_IS_NULL makes MariaDB store every empty string as NULL, bound or written into the statement, so that a sandbox with an empty provider or an invocation with an empty model fails (error 1048), and the package's own '' reads as NULL",
			Use:    "remove EMPTY_STRING_IS_NULL from the connection's sql_mode (set sql_mode in the DSN, e.g. sql_mode='STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION')"}
	case s.charset != "utf8mb4":
		return &dialect.SettingError{Setting: "charset", Value: s.charset,
			Reason: "the connection's character set cannot hold every character the package stores",
			Use:    "open MariaDB with charset=utf8mb4, which holds every character"}
	case !s.parseTime:
		return &dialect.SettingError{Setting: "parseTime", Value: "false",
			Reason: "the connection returns DATETIME columns as text, which the models cannot read",
			Use:    "open MariaDB with parseTime=true"}
	case s.aliased:
		return &dialect.SettingError{Setting: "columnsWithAlias", Value: "true",
			Reason: "go-sql-driver/mysql then names each column table.column, which GORM matches to no field: every read of a model, yours too, would return zero values and no error",
			Use:    "open the pool you give GORM without columnsWithAlias"}
	}
	return nil
}

func contains(mode []string, flag string) bool {
	for _, m := range mode {
		if m == flag {
			return true
		}
	}
	return false
}

// session reads and checks the settings of the connections q runs on; see
// dialect.Dialect.Session.
func session(q dialect.Query) (*dialect.Session, error) {
	var s settings
	read := false
	err := q(settingsSQL, []any{settingsProbe}, func(rows *sql.Rows) error {
		var err error
		s, err = readSettings(rows)
		read = true
		return err
	})
	switch {
	case err != nil:
		return nil, err
	case !read:
		return nil, errors.New("the settings query returned no row")
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return &dialect.Session{MaxPacket: s.maxPacket, Packet: s.packet}, nil
}
