package main

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/users/sqliteusers"
)

// TestFailedStartCreatesNoAdmin: a start that fails because the port is
// taken exits with an error and leaves no user behind, so no admin exists
// whose password scrolled past with the error.
func TestFailedStartCreatesNoAdmin(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	db := filepath.Join(t.TempDir(), "sessiond.db")
	var out testenv.SyncBuffer
	code := Main(t.Context(), []string{"serve", "--listen", ln.Addr().String(), "--store", "sqlite:" + db}, func(string) string { return "" }, strings.NewReader(""), &out, &out)
	if code == 0 {
		t.Fatalf("serve on a taken port exited 0:\n%s", &out)
	}
	if strings.Contains(out.String(), "Created user") {
		t.Errorf("a failed start announced an admin:\n%s", &out)
	}
	dir, err := sqliteusers.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if n, err := dir.Count(t.Context()); err != nil || n != 0 {
		t.Errorf("a failed start left %d users (%v)", n, err)
	}
}

// TestStorePasswordsNeverLogged: a store location's password appears in
// no log line of a start, nor in the error of a start that cannot reach
// the store.
func TestStorePasswordsNeverLogged(t *testing.T) {
	const secret = "s3cret-in-the-dsn"
	pg, err := testenv.WithParam(testenv.PostgresSchema(t), "password", secret)
	if err != nil {
		t.Fatal(err)
	}
	in := start(t, "--store", pg)
	in.stop()
	if strings.Contains(in.logs.String(), secret) {
		t.Errorf("the log shows the store's password:\n%s", in.logs)
	}
	if !strings.Contains(in.logs.String(), "password=xxxxx") {
		t.Errorf("the log does not name the store, redacted:\n%s", in.logs)
	}

	var out testenv.SyncBuffer
	code := Main(t.Context(), []string{"serve", "--listen", "127.0.0.1:0", "--store", "redis://:" + secret + "@127.0.0.1:1/0", "--users", "sqlite:" + filepath.Join(t.TempDir(), "u.db")}, func(string) string { return "" }, strings.NewReader(""), &out, &out)
	if code == 0 {
		t.Fatal("serve on an unreachable Redis exited 0")
	}
	if strings.Contains(out.String(), secret) {
		t.Errorf("the error shows the store's password:\n%s", &out)
	}
}
