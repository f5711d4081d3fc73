package testenv

import (
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// PostgresServer is a PostgreSQL server of the test's own: a database
// cluster made by initdb in a temporary directory and run by pg_ctl on a
// free port of 127.0.0.1, for tests that stop and start the server (the
// shared test database must stay up for the other tests).
type PostgresServer struct {
	t   testing.TB
	bin string // the directory of initdb and pg_ctl
	// Dir is the data directory.
	Dir string
	// Port is the TCP port the server listens on, on 127.0.0.1.
	Port int
	cred *syscall.Credential // whom to run as, if not this process's user

	mu      sync.Mutex
	running bool
}

// StartPostgres makes a database cluster with initdb (superuser postgres,
// trust authentication, no fsync: a crash of the server loses nothing, a
// crash of the machine may), starts it and stops it when the test ends.
// It takes about a second. PostgreSQL refuses to run as root; a test
// running as root runs it as the user postgres. If initdb is not
// installed (it is looked for on PATH and in /usr/lib/postgresql/*/bin),
// StartPostgres fails the test under CI and skips it otherwise.
func StartPostgres(t testing.TB) *PostgresServer {
	t.Helper()
	p := &PostgresServer{t: t, bin: postgresBin(t), Port: FreePort(t)}
	dir, err := os.MkdirTemp("", "sessiond-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			unavailable(t, "PostgreSQL does not run as root, and there is no user postgres to run it as: "+err.Error())
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	p.Dir = filepath.Join(dir, "data")
	p.run("initdb", "--pgdata", p.Dir, "--username", "postgres", "--auth", "trust",
		"--encoding", "UTF8", "--locale", "C", "--no-sync")
	conf := fmt.Sprintf("port = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nfsync = off\nfull_page_writes = off\nmax_connections = 50\nshared_buffers = 16MB\n", p.Port)
	f, err := os.OpenFile(filepath.Join(p.Dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(conf)
	if err := errors.Join(err, f.Close()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	p.Start()
	return p
}

// URL returns the URL of the database postgres on the server.
func (p *PostgresServer) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.Port)
}

// Start starts the server (again, after Kill) and waits until it accepts
// connections.
func (p *PostgresServer) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		p.t.Fatal("testenv: PostgreSQL is already running")
	}
	p.run("pg_ctl", "start", "--pgdata", p.Dir, "--wait", "--timeout", "30", "--silent",
		"--log", filepath.Join(filepath.Dir(p.Dir), "postgres.log"))
	p.running = true
}

// Kill stops the server at once, as a crash would: every server process
// exits without a checkpoint (pg_ctl stop --mode immediate), and the next
// Start recovers from the write-ahead log. It does nothing if the server
// is not running.
func (p *PostgresServer) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		return
	}
	p.run("pg_ctl", "stop", "--pgdata", p.Dir, "--mode", "immediate", "--wait", "--silent")
	p.running = false
}

// run runs one of the PostgreSQL programs as the server's user.
func (p *PostgresServer) run(name string, args ...string) {
	p.t.Helper()
	cmd := osexec.Command(filepath.Join(p.bin, name), args...)
	cmd.Dir = os.TempDir()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Setpgid: true}
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(filepath.Dir(p.Dir), "postgres.log"))
		p.t.Fatalf("testenv: %s %v: %v\n%s\n%s", name, args, err, out, log)
	}
}

// postgresBin returns the directory that holds initdb and pg_ctl.
func postgresBin(t testing.TB) string {
	t.Helper()
	var dirs []string
	if path, err := osexec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(path))
	}
	// Debian and Ubuntu keep them out of PATH, one directory per version.
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(found, func(a, b string) int { return version(b) - version(a) })
	for _, dir := range append(dirs, found...) {
		if isFile(filepath.Join(dir, "initdb")) && isFile(filepath.Join(dir, "pg_ctl")) {
			return dir
		}
	}
	unavailable(t, "initdb and pg_ctl are not installed (apt-get install postgresql): a test needs a PostgreSQL server of its own")
	return ""
}

// version returns N of /usr/lib/postgresql/N/bin, 0 if it is not a number.
func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}
