package repository

import (
	"errors"
	"fmt"

	"github.com/agentpipeline/persistence/internal/dialect"
)

// Sentinel errors returned, wrapped, by every [Repository] method. Match them
// with errors.Is.
var (
	// ErrNotFound means a row the call names, or a parent row it refers to,
	// does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalidInput means an argument was rejected before the database was
	// touched, or, on MariaDB, a write whose statement the server would
	// refuse as larger than its max_allowed_packet, before it was sent.
	// The error is an *InputError naming the field, or the arguments
	// together.
	ErrInvalidInput = dialect.ErrInvalidInput
	// ErrInvalidTransition means a row is in a state the requested transition
	// may not leave, such as a completed run asked to fail. Nothing changed.
	// The error is a *TransitionError naming the current state.
	ErrInvalidTransition = errors.New("invalid transition")
)

// ErrPreparedStatementLimit means the server refused to prepare a
// statement because it already holds as many prepared statements as it
// allows, across all its connections and clients: MariaDB's
// max_prepared_stmt_count (16,382 by default), under GORM's PrepareStmt,
// which prepares each statement text once per connection. A Repository in
// a tenant schema has statement texts of its own, so the count grows with
// tenants × connections. The statement ran nothing; the error wraps the
// driver's. Turn PrepareStmt off, or bound gorm.Config.PrepareStmtMaxSize:
// see docs/tenants.md.
var ErrPreparedStatementLimit = dialect.ErrPreparedStatementLimit

// ErrUnsupportedSetting means a setting of the connections or the server
// keeps the package from keeping its promises, such as autocommit=0 on
// MariaDB: every method returns it, before any write, until the setting
// is changed. The error is a [*SettingError] naming the setting and what to
// use instead. migrate.Up refuses the same settings.
var ErrUnsupportedSetting = dialect.ErrUnsupportedSetting

// SettingError describes a setting under which the package cannot keep
// its promises: Setting names it (a server variable such as "sql_mode",
// or a DSN parameter of the driver such as "columnsWithAlias"), Value is
// its value, Reason what would go wrong, and Use what to use instead. It
// matches [ErrUnsupportedSetting].
type SettingError = dialect.SettingError

// InputError describes one rejected argument. It matches [ErrInvalidInput].
type InputError struct {
	// Field names the argument, such as "NewFeatureRun.Phase" or "runID".
	Field string
	// Reason says what is wrong with it.
	Reason string
}

func (e *InputError) Error() string {
	return fmt.Sprintf("%s: %s: %s", ErrInvalidInput, e.Field, e.Reason)
}

// Is reports whether target is [ErrInvalidInput].
func (e *InputError) Is(target error) bool { return target == ErrInvalidInput }

// TransitionError describes a refused state transition. It matches
// [ErrInvalidTransition].
type TransitionError struct {
	// Table is the table of the row, such as "cta_events".
	Table string
	// ID is the row's primary key as text.
	ID string
	// From is the state the row is in, such as "completed".
	From string
	// To is the state the call needs the row in: the state it asked for,
	// or, for a change within a state (a new phase, new memories), that
	// state.
	To string
	// Detail says what the call asked for beyond a state, such as
	// `phase "review"` or "2 new memories"; empty for a plain state change.
	Detail string
}

func (e *TransitionError) Error() string {
	s := fmt.Sprintf("%s: %s %s is %s, cannot become %s", ErrInvalidTransition, e.Table, e.ID, e.From, e.To)
	if e.Detail != "" {
		s += " with " + e.Detail
	}
	return s
}

// Is reports whether target is [ErrInvalidTransition].
func (e *TransitionError) Is(target error) bool { return target == ErrInvalidTransition }

// foreignKeyError is the error of a write that referred to a missing
// parent row.
type foreignKeyError struct {
	// constraint names the violated foreign key; empty where the database
	// does not say.
	constraint string
}

func (e *foreignKeyError) Error() string { return "foreign key " + e.constraint + " violated" }
