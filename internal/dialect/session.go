package dialect

import (
	"database/sql"
	"errors"
	"fmt"
)

// Query runs query with args through a Repository's callback chains, on
// the primary under read/write splitting, and calls scan for each row it
// returns.
type Query func(query string, args []any, scan func(*sql.Rows) error) error

// Session is what a Repository knows of the connections it works through,
// read by Dialect.Session before its first statement.
type Session struct {
	// MaxPacket is the server's limit on the size of a packet (MariaDB's
	// max_allowed_packet), which takes packets smaller than it; zero for
	// no limit.
	MaxPacket int
	// Packet returns the size in bytes of the largest packet that sends
	// query with args to the server, and what each arg adds to it.
	Packet func(query string, args []any) (size int, shares []int)
}

// ErrPreparedStatementLimit is matched by the error of a statement the
// server refused to prepare, as it already holds as many prepared
// statements as it allows (see Dialect.PreparedLimit); repository exports
// it.
var ErrPreparedStatementLimit = errors.New("the server's prepared statement limit is reached")

// ErrUnsupportedSetting is matched by every *SettingError.
var ErrUnsupportedSetting = errors.New("unsupported setting")

// SettingError is the error of a connection or server setting under which
// the package cannot keep its promises. It matches ErrUnsupportedSetting.
type SettingError struct {
	// Setting names the setting as it is set, such as "autocommit",
	// "sql_mode" or "columnsWithAlias" (a DSN parameter of the driver).
	Setting string
	// Value is the value found, such as "0".
	Value string
	// Reason says what would go wrong under it.
	Reason string
	// Use says what to use instead.
	Use string
}

func (e *SettingError) Error() string {
	return fmt.Sprintf("%s: %s=%s: %s; %s", ErrUnsupportedSetting, e.Setting, e.Value, e.Reason, e.Use)
}

// Is reports whether target is ErrUnsupportedSetting.
func (e *SettingError) Is(target error) bool { return target == ErrUnsupportedSetting }
