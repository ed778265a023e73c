package repository

import (
	"context"
	"database/sql"
	"sync/atomic"

	"github.com/agentpipeline/persistence/internal/dialect"
)

// server is what a Repository knows of the connections it works through
// (dialect.Session): read before its first statement, and again when the
// server refuses a statement as too large, as its limit may have changed.
type server struct {
	session atomic.Pointer[dialect.Session]
}

// ready reads and checks the settings of the Repository's connections
// unless it has: a *SettingError until they are right. It sends nothing
// on a DryRun session, and on a database with nothing to read.
func (r *Repository) ready(ctx context.Context) error {
	if r.dialect.Session == nil || r.dryRun() || r.server.session.Load() != nil {
		return nil
	}
	_, err := r.readSession(ctx)
	return err
}

// readSession reads the settings of the Repository's connections, on the
// primary, and keeps them. Calls that start at once may each read them.
func (r *Repository) readSession(ctx context.Context) (*dialect.Session, error) {
	s, err := r.dialect.Session(func(query string, args []any, scan func(*sql.Rows) error) error {
		return r.query(ctx, "", query, args, true, scan)
	})
	if err != nil {
		return nil, err
	}
	r.server.session.Store(s)
	return s, nil
}
