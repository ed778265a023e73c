package repository

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"sync"
	"time"
	"weak"

	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dialect"
)

// defaultStopWait is how long a write whose context ended waits for the
// database to answer it, once asked to stop it, unless [StopWait] says
// otherwise. A server answers a stop request at once, so the wait ends
// long before this unless the server, the network or a pooler in between
// is down or overwhelmed: on a loaded machine PgBouncer took more than
// 5 s to forward one, and a request that PgBouncer has not sent on when
// the write gives up is dropped with the connection the write then
// closes, while PostgreSQL goes on running the statement. It is longer
// than the cancel_wait_timeout of PgBouncer 1.19 and later (10 s by
// default), after which PgBouncer drops a request it could not forward,
// and the write sends another.
const defaultStopWait = 15 * time.Second

// StopWait makes [New] return a Repository whose writes, when their
// context ends, wait up to d, rather than 15 s, for the database to answer
// the request to stop their statement. When the wait ends first, the write
// returns its context's error and closes its connection, and its
// statement may still commit, if the server ever runs it: a shorter wait
// returns sooner from a server that does not answer, a longer one keeps
// the promise that a write that returned an error never lands through
// longer stalls of the server or of a pooler. For d <= 0 every method
// returns an [*InputError] on "StopWait", before touching the database.
func StopWait(d time.Duration) Option { return Option{stopWait: &d} }

// requestWait bounds one request to stop a statement, which may outlive
// the write that sent it (see watch.stop). It is longer than the
// cancel_wait_timeout of PgBouncer 1.19 and later (10 s by default), after
// which PgBouncer closes a cancel request it could not forward: PgBouncer,
// not the Repository, ends such a request. PgBouncer 1.18 has no such
// bound, and a request it keeps longer is closed here.
const requestWait = 30 * time.Second

// resolverCallback is the name under which gorm.io/plugin/dbresolver
// registers the callbacks that choose each statement's connection pool.
const resolverCallback = "gorm:db_resolver"

// pinner is a connection pool that hands out a connection of its own to
// keep: *sql.DB, and wrappers of it that offer its Conn.
type pinner interface {
	gorm.ConnPool
	Conn(ctx context.Context) (*sql.Conn, error)
}

// pinned is a connection the Repository pinned for a write, or the pool
// it came from, as the statement's connection pool. It is a
// gorm.TxCommitter, as a transaction is, so that resolvers, which leave a
// transaction's statements on its connection, leave its statements where
// they are. It commits and rolls back nothing: there is no transaction.
type pinned struct{ gorm.ConnPool }

// Commit commits nothing: there is no transaction.
func (pinned) Commit() error { return nil }

// Rollback rolls nothing back: there is no transaction.
func (pinned) Rollback() error { return nil }

// direct is a pinned connection whose statements that return no rows run
// on its driver connection, conn, through exec (dialect.Stop.Exec), for
// as long as database/sql lends conn out (sql.Conn.Raw). database/sql
// holds the pinned connection meanwhile, so a statement that returns
// rows, which only a callback of the caller's would send in the middle
// of a write, runs on another connection of pool.
type direct struct {
	pinned
	pool pinner
	conn any
	exec func(ctx context.Context, conn any, query string, args []any) (int64, error)
}

// ExecContext runs query on the driver connection.
func (d *direct) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	n, err := d.exec(ctx, d.conn, query, args)
	if err != nil {
		return nil, err
	}
	return driver.RowsAffected(n), nil
}

// PrepareContext prepares query on another connection of the pool.
func (d *direct) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return d.pool.PrepareContext(ctx, query)
}

// QueryContext runs query on another connection of the pool.
func (d *direct) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return d.pool.QueryContext(ctx, query, args...)
}

// QueryRowContext runs query on another connection of the pool.
func (d *direct) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return d.pool.QueryRowContext(ctx, query, args...)
}

// stopper is how a Repository stops its writes whose context ended (see
// write): the pool it pins a connection of for each write, or the
// resolver callback that chooses that pool, as the Create chain would.
type stopper struct {
	pool    pinner
	resolve func(*gorm.DB)
	// wait is how long a write waits for its stopped statement's answer.
	wait time.Duration
}

// newStopper returns the stopper of the Repository over db, whose dialect
// stops statements if stop, with the wait of opts, or nil when its writes
// cannot be stopped: writes pin no connection inside a transaction (whose
// writes commit only with it), nor from a pool that does not hand out
// connections. It returns an error for a wait that is not positive.
func newStopper(db *gorm.DB, stop bool, opts []Option) (*stopper, error) {
	wait := defaultStopWait
	for _, o := range opts {
		if o.stopWait != nil {
			wait = *o.stopWait
		}
	}
	if wait <= 0 {
		return nil, &InputError{Field: "StopWait", Reason: fmt.Sprintf("must be positive, not %v", wait)}
	}
	if !stop {
		return nil, nil
	}
	if resolve := db.Callback().Create().Get(resolverCallback); resolve != nil {
		return &stopper{resolve: resolve, wait: wait}, nil
	}
	if pool := pinnable(db.Statement.ConnPool); pool != nil {
		return &stopper{pool: pool, wait: wait}, nil
	}
	return nil, nil
}

// pinnable returns the pool of pool's connections to pin one of for a
// write, or nil for a transaction or a pool that hands out none. gorm's
// PrepareStmt pool prepares each statement on the pool as a whole, for
// any of its connections, so a write pins one of the pool it wraps and
// runs there as the driver runs statements (pgx prepares and caches them
// per connection on its own).
func pinnable(pool gorm.ConnPool) pinner {
	if p, ok := pool.(*gorm.PreparedStmtDB); ok {
		pool = p.ConnPool
	}
	if _, ok := pool.(gorm.TxCommitter); ok {
		return nil
	}
	p, _ := pool.(pinner)
	return p
}

// write runs a statement that writes, do, on tx. When ctx can end, do runs
// on a connection pinned from the pool the statement would run on, under
// a context that keeps ctx's values but not its end: drivers abandon a
// statement at its context's end without stopping it, and the server then
// commits it once the lock it waits for is free, after the call returned
// an error. At ctx's end the server is asked to stop the statement
// instead, and write waits, at most the stopper's wait, for its answer:
// its success if it committed first, or the error of the statement
// stopped. A connection the server was asked to stop a statement of is
// closed, not reused: the request may reach it after its statement ended.
//
// The statement's context never ends where the connection can be broken
// from outside (pgx's): then neither database/sql nor the driver watches
// it, which spares each statement their callbacks and, for one that
// returns rows, database/sql's goroutine. Elsewhere it ends when write
// gives up waiting (see killer).
//
// A statement that returns no rows (exec), on a connection whose driver
// the dialect runs statements on itself (dialect.Stop.Exec), runs there
// rather than through database/sql, which spares it database/sql's
// handling of the call: the callback chain still runs, and its
// statement's connection pool is the pinned connection's (see direct).
func (r *Repository) write(ctx context.Context, tx *gorm.DB, exec bool, do func(tx *gorm.DB) error) error {
	if r.stopper == nil || ctx.Done() == nil || r.dryRun() {
		return do(tx)
	}
	pool := r.stopper.pool
	if r.stopper.resolve != nil {
		r.stopper.resolve(tx)
		if pool = pinnable(tx.Statement.ConnPool); pool == nil {
			return do(tx)
		}
	}
	conn, err := pool.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	c, err := r.canceler(ctx, pool, conn)
	if err != nil {
		return err
	}
	if c == nil {
		return do(tx)
	}
	w := &watch{c: c, pinned: pinned{conn}}
	tx.Statement.Context = context.WithoutCancel(ctx)
	if k, ok := c.(*killer); ok {
		tx.Statement.Context, k.abandon = context.WithCancel(tx.Statement.Context)
		defer k.abandon()
	}
	tx.Statement.ConnPool = &w.pinned
	w.stopping.Add(1)
	unwatch := context.AfterFunc(ctx, func() { w.stop(ctx, r.stopper.wait) })
	if exec && r.dialect.Stop.Exec != nil {
		err = conn.Raw(func(driverConn any) error {
			tx.Statement.ConnPool = &direct{pinned: w.pinned, pool: pool, conn: driverConn, exec: r.dialect.Stop.Exec}
			return do(tx)
		})
	} else {
		err = do(tx)
	}
	w.answer()
	if unwatch() {
		w.stopping.Done()
	} else {
		w.stopping.Wait()
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	return err
}

// watch is the state of a write on a pinned connection that write shares
// with the stop that runs at its context's end. Its channel is made only
// when a stop starts before the statement answered, so that the write
// whose context does not end, nearly every one, makes none.
type watch struct {
	pinned
	c dialect.Canceler
	// stopping is done when stop has returned, or will not run.
	stopping sync.WaitGroup

	mu       sync.Mutex
	answered bool
	ch       chan struct{} // closed by answer, when stop made it
}

// answer records that the statement answered, and wakes stop.
func (w *watch) answer() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.answered = true
	if w.ch != nil {
		close(w.ch)
	}
}

// stop asks the server to stop the statement until it answers, or, after
// wait, breaks its connection. Each request runs on its own, bounded by
// requestWait and not by wait: a stop that gives up leaves the
// request in flight to end when its server or pooler answers it, because
// PgBouncer before 1.19.1 exits (FATAL "bad client state: 0") when a
// client closes a cancel request it is still forwarding.
func (w *watch) stop(ctx context.Context, wait time.Duration) {
	defer w.stopping.Done()
	w.mu.Lock()
	if w.answered {
		w.mu.Unlock()
		return
	}
	answered := make(chan struct{})
	w.ch = answered
	w.mu.Unlock()
	gaveUp := time.NewTimer(wait)
	defer gaveUp.Stop()
	ctx = context.WithoutCancel(ctx)
	// A request that reaches the server before the statement does, or
	// before the statement may be stopped (see killer), stops nothing, so
	// it is sent again, once the last one was answered, until the
	// statement's answer comes.
	sent := w.request(ctx)
	var pause <-chan time.Time
	for again := 10 * time.Millisecond; ; {
		select {
		case <-answered:
			return
		case <-gaveUp.C:
		case err := <-sent:
			if err == nil {
				sent, pause = nil, time.After(again)
				again = min(2*again, 200*time.Millisecond)
				continue
			}
		case <-pause:
			sent, pause = w.request(ctx), nil
			continue
		}
		// The wait ended, or the request failed.
		w.c.Break()
		return
	}
}

// request sends one request to stop the statement, bounded by
// requestWait, and returns the channel that receives its error.
func (w *watch) request(ctx context.Context) <-chan error {
	sent := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, requestWait)
		defer cancel()
		sent <- w.c.Cancel(ctx)
	}()
	return sent
}

// canceler returns the dialect.Canceler of conn, a connection of pool, or
// nil when the dialect does not know conn's driver.
func (r *Repository) canceler(ctx context.Context, pool pinner, conn *sql.Conn) (dialect.Canceler, error) {
	s := r.dialect.Stop
	var c dialect.Canceler
	var raw any
	if err := conn.Raw(func(driverConn any) error {
		raw = driverConn
		if s.Conn != nil {
			c, _ = s.Conn(driverConn)
		}
		return nil
	}); err != nil || s.Conn != nil {
		return c, err
	}
	id, err := r.connID(ctx, conn, raw)
	if err != nil {
		return nil, err
	}
	return &killer{r: r, pool: pool, id: id}, nil
}

// killer stops the statement of the connection whose server ID is id, a
// connection of pool, by the dialect's Running and Kill statements, sent
// on another connection of pool: the same server. Its Break cancels the
// statement's context, abandon, which write sets: a driver without a
// connection the package can break (go-sql-driver/mysql) closes it at
// that context's end.
type killer struct {
	r       *Repository
	pool    pinner
	id      int64
	abandon context.CancelFunc
}

// Cancel kills the connection's statement if the dialect's Running
// returns it. A statement not running yet, or not where it may be killed
// (see dialect.Stop), is left for the next request.
func (k *killer) Cancel(ctx context.Context) error {
	s := k.r.dialect.Stop
	query, ok, err := k.r.scalar(ctx, pinned{k.pool}, s.Running, k.id)
	if err != nil || !ok {
		return err
	}
	tx := k.r.statement(ctx, "", s.Kill, []any{query})
	tx.Statement.ConnPool = pinned{k.pool}
	if err := tx.Callback().Raw().Execute(tx).Error; err != nil && (s.Ended == nil || !s.Ended(err)) {
		return err
	}
	return nil
}

// Break cancels the statement's context.
func (k *killer) Break() { k.abandon() }

// connIDs holds the server's ID of each driver connection the package has
// pinned, for as long as the connection lives.
var connIDs sync.Map // weak.Pointer[byte] → int64

// connID returns the server's ID of conn, whose driver connection is raw.
func (r *Repository) connID(ctx context.Context, conn *sql.Conn, raw any) (int64, error) {
	v := reflect.ValueOf(raw)
	if v.Kind() != reflect.Pointer {
		return 0, fmt.Errorf("a driver connection of type %T cannot be told apart", raw)
	}
	p := (*byte)(v.UnsafePointer())
	key := weak.Make(p)
	if id, ok := connIDs.Load(key); ok {
		return id.(int64), nil
	}
	id, ok, err := r.scalar(ctx, pinned{conn}, r.dialect.Stop.ConnID)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, errors.New("no connection ID")
	}
	connIDs.Store(key, id)
	runtime.AddCleanup(p, func(k weak.Pointer[byte]) { connIDs.Delete(k) }, key)
	return id, nil
}

// scalar returns the integer in the first column of the first row query
// returns on pool, through the Row chain, and whether there was a row.
func (r *Repository) scalar(ctx context.Context, pool gorm.ConnPool, query string, vars ...any) (int64, bool, error) {
	tx := r.statement(ctx, "", query, vars)
	tx.Statement.ConnPool = pool
	var n int64
	found := false
	err := rows(tx, true, func(rs *sql.Rows) error {
		if found {
			return nil
		}
		found = true
		return rs.Scan(&n)
	})
	return n, found, err
}
