package dbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dialect/mariadb"
	"github.com/agentpipeline/persistence/internal/dialect/mariadb/mariadbtest"
)

// PrivateServer is a MariaDB server of one test's own, for tests that read
// the server's global state, such as SHOW GLOBAL STATUS, which the tests
// sharing the MariaDB test server would disturb.
type PrivateServer struct {
	// DSN is the go-sql-driver/mysql DSN of the server, as root, without a
	// database.
	DSN string
	// Admin is a pool of connections to the server, without a database.
	Admin *sql.DB
}

// The executables of Debian's mariadb-server-core, which install in
// /usr/sbin and /usr/bin, the first not on every user's PATH.
var (
	mariadbd       = []string{"mariadbd", "/usr/sbin/mariadbd"}
	mariadbInstall = []string{"mariadb-install-db", "/usr/bin/mariadb-install-db"}
)

// PrivateMariaDB starts a MariaDB server of tb's own, from the mariadbd
// and mariadb-install-db executables, on a free port of 127.0.0.1, its
// data in a temporary directory, and stops it when the test ends. It
// takes about a second. The server reads no option file, so that nothing
// of the machine's server leaks into it: it has the character set and
// collation Debian's configuration gives the test server, and no grant
// tables, so root needs no password. options are added to mariadbd's
// command line, such as --max-prepared-stmt-count=1000: a test changes the
// server's global settings there, never on a server it shares. Without the
// executables the test is skipped, or fails where the CI environment
// variable is set.
func PrivateMariaDB(tb testing.TB, options ...string) *PrivateServer {
	tb.Helper()
	server, install := lookPath(mariadbd), lookPath(mariadbInstall)
	if server == "" || install == "" {
		if os.Getenv("CI") != "" {
			tb.Fatalf("mariadbd and mariadb-install-db are required when CI is set: install them (apt-get install mariadb-server)")
		}
		tb.Skip("skipping: no mariadbd or mariadb-install-db on PATH or in /usr/sbin, /usr/bin (apt-get install mariadb-server)")
	}
	dir := tb.TempDir()
	data := filepath.Join(dir, "data")
	// Its own temporary directory: a server clears the #sql files of its
	// tmpdir when it starts, which in the shared /tmp would be the live
	// temporary tables of the machine's server.
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		tb.Fatal(err)
	}
	var user []string
	if os.Geteuid() == 0 {
		// mariadbd refuses to run as root unless told to.
		user = []string{"--user=root"}
	}
	// --no-defaults must come first.
	installArgs := append([]string{"--no-defaults", "--datadir=" + data, "--tmpdir=" + tmp, "--skip-test-db", "--innodb-log-file-size=8M"}, user...)
	if out, err := exec.Command(install, installArgs...).CombinedOutput(); err != nil {
		tb.Fatalf("%s: %v\n%s", install, err, out)
	}
	// A Unix socket path is at most 107 bytes; mariadbd always makes one,
	// and it must not be the machine's server's.
	sockDir := dir
	if len(filepath.Join(sockDir, "mariadbd.sock")) > 100 {
		d, err := os.MkdirTemp("/tmp", "mariadbd-")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = os.RemoveAll(d) })
		sockDir = d
	}
	args := append([]string{
		"--no-defaults",
		"--datadir=" + data,
		"--tmpdir=" + tmp,
		"--socket=" + filepath.Join(sockDir, "mariadbd.sock"),
		"--pid-file=" + filepath.Join(dir, "mariadbd.pid"),
		"--log-error=" + filepath.Join(dir, "error.log"),
		"--bind-address=127.0.0.1",
		"--skip-networking=0",
		"--skip-name-resolve",
		"--skip-grant-tables",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
		"--innodb-log-file-size=8M",
		// A server thrown away with the test: no need to flush the log
		// to disk at each commit.
		"--innodb-flush-log-at-trx-commit=2",
	}, user...)
	args = append(args, options...)
	// The port is free when chosen but may be taken before mariadbd binds
	// it, by a test running at the same time: then try another.
	var lastErr error
	for range 3 {
		var s *PrivateServer
		if s, lastErr = runMariaDB(tb, server, args, dir); lastErr == nil {
			return s
		}
	}
	tb.Fatalf("start mariadbd: %v", lastErr)
	return nil
}

// runMariaDB starts server with args on a free port and waits until it
// answers. It returns an error if the server exits first.
func runMariaDB(tb testing.TB, server string, args []string, dir string) (*PrivateServer, error) {
	tb.Helper()
	port, err := FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	logPath := filepath.Join(dir, "error.log")
	_ = os.Remove(logPath)
	// Not daemonised: a child process, stopped by its PID.
	cmd := exec.Command(server, append(args, "--port="+strconv.Itoa(port))...)
	stopWithTest(cmd)
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", server, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // a normal shutdown
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	showLog := func() {
		if out, err := os.ReadFile(logPath); err == nil {
			tb.Logf("mariadbd log:\n%s", out)
		}
	}

	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg.ParseTime = true
	dsn := cfg.FormatDSN()
	admin, err := sql.Open("mysql", dsn)
	if err != nil {
		stop()
		tb.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			_ = admin.Close()
			showLog()
			return nil, fmt.Errorf("mariadbd exited on port %d: %v", port, cmd.ProcessState)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = admin.PingContext(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = admin.Close()
			stop()
			showLog()
			tb.Fatalf("mariadbd does not answer on port %d: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Cleanup(func() {
		_ = admin.Close()
		stop()
	})
	return &PrivateServer{DSN: dsn, Admin: admin}, nil
}

// Database returns an Opener of fresh databases on s, as All's are on the
// test server: each test's database of its own, dropped when it ends.
func (s *PrivateServer) Database() Database {
	return Database{Name: mariadb.Dialect.Name, Dialect: &mariadb.Dialect, Open: func(t testing.TB) *gorm.DB {
		t.Helper()
		cfg, err := mariadb.Config(s.DSN)
		if err != nil {
			t.Fatal(err)
		}
		cfg.DBName = mariadbtest.Database(t, s.Admin)
		sqlDB, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			t.Fatalf("open MariaDB: %v", err)
		}
		// Cleanups run last first: the pool closes before its database
		// goes, and both before the server.
		t.Cleanup(func() { _ = sqlDB.Close() })
		return open(t, &mariadb.Dialect, sqlDB)
	}}
}

// GlobalStatus returns the value of the server's global status variable
// name, such as Prepared_stmt_count.
func (s *PrivateServer) GlobalStatus(tb testing.TB, name string) int64 {
	tb.Helper()
	if !statusName.MatchString(name) {
		tb.Fatalf("%q is not the name of a status variable", name)
	}
	var got string
	var value int64
	// Not a prepared statement, which Prepared_stmt_count would count.
	err := s.Admin.QueryRow("SHOW GLOBAL STATUS LIKE '"+name+"'").Scan(&got, &value)
	if errors.Is(err, sql.ErrNoRows) {
		tb.Fatalf("no global status variable %s", name)
	}
	if err != nil {
		tb.Fatalf("SHOW GLOBAL STATUS LIKE %q: %v", name, err)
	}
	return value
}

// statusName is the form of a status variable's name.
var statusName = regexp.MustCompile(`^[A-Za-z_]+$`)

// lookPath returns the first of names that is an executable, or "".
func lookPath(names []string) string {
	for _, name := range names {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	return ""
}

// FreePort returns a TCP port of the loopback interface that is free now,
// for a server a test starts. Another process may take it before the
// server binds it, so a caller that can tries again with another.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
