package migrate

import "github.com/agentpipeline/persistence/internal/dialect"

// ErrUnsupportedSetting means [Up] found a setting of the connection or the
// server under which the package cannot keep its promises, such as
// autocommit=0 or a sql_mode with EMPTY_STRING_IS_NULL on MariaDB; it
// changed nothing. The error is a [*SettingError]. It is the same error as
// repository.ErrUnsupportedSetting, which a Repository returns for the
// same settings.
var ErrUnsupportedSetting = dialect.ErrUnsupportedSetting

// SettingError describes a setting under which the package cannot keep
// its promises: Setting names it (a server variable such as "sql_mode",
// or a DSN parameter of the driver such as "columnsWithAlias"), Value is
// its value, Reason what would go wrong, and Use what to use instead. It
// matches [ErrUnsupportedSetting].
type SettingError = dialect.SettingError

// ErrSchemaMismatch means [Up] found tables whose columns differ from those
// it makes in a way that breaks a promise, such as IDs compared without
// regard to case in a MariaDB schema made by GORM's AutoMigrate; it
// changed nothing. The error is a [*SchemaError].
var ErrSchemaMismatch = dialect.ErrSchemaMismatch

// SchemaError lists the columns that differ from those [Up] makes, in
// Columns, and says what to do, in Fix. It matches [ErrSchemaMismatch].
type SchemaError = dialect.SchemaError

// ColumnMismatch is a column of a [SchemaError]: Table and Column name it,
// Got is its type and collation as the catalog shows them, and Want those
// [Up] makes.
type ColumnMismatch = dialect.ColumnMismatch
