// Package repository is the replay-safe persistence contract of the agent
// pipeline: every write can be repeated, or raced by many copies of itself,
// and leaves the database as if it ran once.
//
// Three mechanisms keep that promise:
//
//   - Creates are INSERT … ON CONFLICT DO NOTHING (on MariaDB, GORM's
//     ON DUPLICATE KEY UPDATE id=id) on a caller-chosen primary key.
//     Derive keys with [StableID] from what identifies the work, so that a
//     re-executed step finds the row its first execution wrote; the first
//     write's data is kept.
//   - Transitions are guarded in the UPDATE's WHERE clause. Repeating one is a
//     no-op that returns nil; leaving a terminal state returns
//     [ErrInvalidTransition] and changes nothing.
//   - Memories are appended by a single statement that skips values already
//     present, comparing JSON by value.
//
// Every write but the CTA sweeper is one SQL statement on its happy path,
// without a surrounding transaction; on PostgreSQL its replay and its
// refusal are too, as the statement returns the row's state beside the
// change. The sweeper, [Repository.ExpireCTAEvents], is one statement on
// SQLite and PostgreSQL, but on MariaDB, which has no UPDATE … RETURNING,
// a read and then a transaction of two statements. Answers are
// linearizable: each is what a one-at-a-time execution of the calls on the
// row would return. Arguments are checked before the database is touched;
// a rejected one returns an [*InputError] matching [ErrInvalidInput]. On
// MariaDB so does a write whose statement, with its arguments, the server
// would refuse as larger than its max_allowed_packet, before it is sent;
// and connection settings under which the package cannot keep its
// promises make every method return a [*SettingError], before any write.
//
// Every statement runs through the callback chains of the caller's
// *gorm.DB (see [New]), rendered once per database. Fence the moves a
// late step could take back with [Repository.AtStep]; check your own
// steps with package persistencetest.
//
// The package works with PostgreSQL, SQLite (with foreign keys enabled)
// and MariaDB 10.11 or later (with parseTime=true, autocommit on, a strict
// sql_mode without EMPTY_STRING_IS_NULL, and columnsWithAlias off), through
// GORM's drivers for each (gorm.io/driver/mysql for MariaDB).
package repository
