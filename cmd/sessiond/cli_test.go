package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/users"
	"github.com/sessiond/sessiond/users/sqliteusers"
)

// runCLI runs sessiond with args and env, stdin empty, and returns its
// exit code, stdout and stderr.
func runCLI(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(t.Context(), args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// newDatabase makes a SQLite database with the user alice (password
// "alice-password-1") and returns its --store value.
func newDatabase(t *testing.T) string {
	t.Helper()
	store := "sqlite:" + filepath.Join(t.TempDir(), "sessiond.db")
	if code, _, errOut := runCLI(t, map[string]string{"SESSIOND_PASSWORD": "alice-password-1"}, "users", "add", "alice", "--store", store); code != 0 {
		t.Fatalf("users add alice: exit %d: %s", code, errOut)
	}
	return store
}

// passwordIs reports whether password is the password of username in the
// database at store.
func passwordIs(t *testing.T, store, username, password string) bool {
	t.Helper()
	dir, err := sqliteusers.Open(strings.TrimPrefix(store, "sqlite:"))
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	_, err = users.NewAccounts(dir, users.Params{}).Authenticate(t.Context(), username, password)
	return err == nil
}

func TestHelpExitCodes(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		stdout   string // in stdout, for code 0
		stderr   string // in stderr, for other codes
		notInOut string
	}{
		{args: []string{"--help"}, code: 0, stdout: "users passwd NAME"},
		{args: []string{"-h"}, code: 0, stdout: "sessions revoke"},
		{args: []string{"help"}, code: 0, stdout: "serve"},
		{args: []string{"help", "users"}, code: 0, stdout: "users disable NAME", notInOut: "sessions list"},
		{args: []string{"users", "--help"}, code: 0, stdout: "users list"},
		{args: []string{"help", "users", "add"}, code: 0, stdout: "--roles"},
		{args: []string{"users", "add", "--help"}, code: 0, stdout: "Example:\n  sessiond users add alice", notInOut: "--idle-timeout"},
		{args: []string{"sessions", "revoke", "-h"}, code: 0, stdout: "--user"},
		{args: []string{"serve", "--help"}, code: 0, stdout: "--idle-timeout DURATION"},
		{args: []string{}, code: 2, stderr: "Usage: sessiond COMMAND"},
		{args: []string{"usrs"}, code: 2, stderr: `unknown command "usrs" (did you mean "sessiond users"?)`},
		{args: []string{"users"}, code: 2, stderr: "users: which command?"},
		{args: []string{"users", "lsit"}, code: 2, stderr: `did you mean "sessiond users list"?`},
		{args: []string{"users", "add"}, code: 2, stderr: "users add takes a username"},
		{args: []string{"users", "passwd", "alice", "--roles", "x"}, code: 2, stderr: "unknown flag --roles"},
		{args: []string{"sessions", "revoke"}, code: 2, stderr: "sessions revoke takes a session ID, or --user NAME"},
		{args: []string{"sessions", "revoke", "s_1", "--user", "alice"}, code: 2, stderr: "sessions revoke takes a session ID, or --user NAME"},
		{args: []string{"help", "nothing"}, code: 2, stderr: `unknown command "nothing"`},
		{args: []string{"serve", "--idle-timeout", "abc"}, code: 2, stderr: `--idle-timeout: "abc" is not a duration (e.g. 30m`},
		{args: []string{"serve", "--max-sessions-per-user", "many"}, code: 2, stderr: `--max-sessions-per-user: "many" is not a whole number`},
		{args: []string{"serve", "--idel-timeout", "1h"}, code: 2, stderr: "unknown flag --idel-timeout; did you mean --idle-timeout?"},
		{args: []string{"serve", "--listen"}, code: 2, stderr: "--listen needs a value"},
		{args: []string{"serve", "extra"}, code: 2, stderr: `serve takes no arguments`},
	}
	for _, tt := range tests {
		code, out, errOut := runCLI(t, nil, tt.args...)
		if code != tt.code {
			t.Errorf("sessiond %q: exit %d, want %d\nstdout: %s\nstderr: %s", tt.args, code, tt.code, out, errOut)
			continue
		}
		if tt.code == 0 && (!strings.Contains(out, tt.stdout) || errOut != "") {
			t.Errorf("sessiond %q: stdout %q, stderr %q; want %q in stdout and nothing in stderr", tt.args, out, errOut, tt.stdout)
		}
		if tt.notInOut != "" && strings.Contains(out, tt.notInOut) {
			t.Errorf("sessiond %q: the help shows %q, which is not the command's:\n%s", tt.args, tt.notInOut, out)
		}
		if tt.code != 0 && (!strings.Contains(errOut, tt.stderr) || out != "") {
			t.Errorf("sessiond %q: stderr %q, stdout %q; want %q in stderr", tt.args, errOut, out, tt.stderr)
		}
	}
}

// TestConfigErrorsNameTheFlag: a mistake in the environment or the config
// file names where it is, the flag, and what a valid value looks like, and
// an unknown setting gets the nearest flag's name.
func TestConfigErrorsNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"misspelt setting", map[string]string{"SESSIOND_CONFIG": write("a.conf", "# comment\nidle_timeout = 3m\n")}, `a.conf:2: unknown setting "idle_timeout"; did you mean --idle-timeout?`},
		{"setting with dashes", map[string]string{"SESSIOND_CONFIG": write("b.conf", "--store = memory:\n")}, `did you mean --store?`},
		{"unknown setting", map[string]string{"SESSIOND_CONFIG": write("c.conf", "colour = blue\n")}, `unknown setting "colour"`},
		{"bad value in the file", map[string]string{"SESSIOND_CONFIG": write("d.conf", "absolute-timeout = soon\n")}, `d.conf:1: --absolute-timeout: "soon" is not a duration (e.g. 30m`},
		{"bad value in the environment", map[string]string{"SESSIOND_REJECT_AT_LIMIT": "perhaps"}, `SESSIOND_REJECT_AT_LIMIT="perhaps": --reject-at-limit: "perhaps" is not true or false`},
		{"policy names flags", map[string]string{"SESSIOND_IDLE_TIMEOUT": "13h"}, "--idle-timeout (13h0m0s) exceeds --absolute-timeout (12h0m0s)"},
	}
	for _, tt := range tests {
		code, _, errOut := runCLI(t, tt.env, "serve", "--listen", "127.0.0.1:0", "--store", "memory:", "--users", "sqlite:"+filepath.Join(dir, "u.db"))
		if code == 0 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want %q", tt.name, code, errOut, tt.want)
		}
		if strings.Contains(errOut, "IdleTimeout") || strings.Contains(errOut, "AbsoluteTimeout") {
			t.Errorf("%s: the error names an internal field: %q", tt.name, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "u.db")); err == nil {
		t.Error("a start refused for its settings created the database")
	}
}

// TestCLIRefusesToCreateAnEmptyDatabase: a command that acts on existing
// data, run where there is no database, says so and creates none.
func TestCLIRefusesToCreateAnEmptyDatabase(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, args := range [][]string{
		{"users", "list"},
		{"sessions", "list", "alice"},
		{"users", "disable", "alice"},
		{"users", "list", "--store", "memory:"},
	} {
		code, out, errOut := runCLI(t, nil, args...)
		want := "no database at sessiond-data/sessiond.db; run it where sessiond serve keeps its data, or pass --store/--users"
		if code != 1 || !strings.Contains(errOut, want) || out != "" {
			t.Errorf("sessiond %q: exit %d, stdout %q, stderr %q; want exit 1 and %q", args, code, out, errOut, want)
		}
		if _, err := os.Stat(defaultDataDir); err == nil {
			t.Fatalf("sessiond %q created %s", args, defaultDataDir)
		}
	}
}

// TestCLINamesItsDatabaseAndKeepsAuditLinesOut: a command names the
// database it opened on stderr, password redacted, and shows no audit
// log lines unless --log-level asks for them.
func TestCLINamesItsDatabaseAndKeepsAuditLinesOut(t *testing.T) {
	store := newDatabase(t)
	code, out, errOut := runCLI(t, map[string]string{"SESSIOND_PASSWORD": "bob-password-1"}, "users", "add", "bob", "--store", store)
	if code != 0 {
		t.Fatalf("users add bob: exit %d: %s", code, errOut)
	}
	if want := "sessiond: database " + store + "\n"; errOut != want {
		t.Errorf("stderr %q, want only %q", errOut, want)
	}
	if !strings.HasPrefix(out, "created user bob") {
		t.Errorf("stdout %q", out)
	}
	_, _, errOut = runCLI(t, nil, "users", "disable", "bob", "--store", store, "--log-level", "info")
	if !strings.Contains(errOut, "msg=audit") {
		t.Errorf("with --log-level info, no audit line:\n%s", errOut)
	}
	_, _, errOut = runCLI(t, map[string]string{"SESSIOND_LOG_LEVEL": "info"}, "users", "enable", "bob", "--store", store)
	if !strings.Contains(errOut, "msg=audit") {
		t.Errorf("with SESSIOND_LOG_LEVEL=info, no audit line:\n%s", errOut)
	}

	pg, err := testenv.WithParam(testenv.PostgresSchema(t), "password", "pg-secret-in-the-dsn")
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, map[string]string{"SESSIOND_PASSWORD": "carol-password-1"}, "users", "add", "carol", "--store", pg)
	if code != 0 || strings.Contains(errOut, "pg-secret-in-the-dsn") || !strings.Contains(errOut, "password=xxxxx") {
		t.Errorf("on PostgreSQL: exit %d, stderr %q; want the database named, its password redacted", code, errOut)
	}
}

// TestGeneratedPasswordIsShown: with no password given, the one made up
// is printed, and it is the password.
func TestGeneratedPasswordIsShown(t *testing.T) {
	store := newDatabase(t)
	code, out, errOut := runCLI(t, nil, "users", "passwd", "alice", "--store", store)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	_, pw, ok := strings.Cut(out, "generated password: ")
	if !ok {
		t.Fatalf("no generated password announced:\n%s", out)
	}
	if pw = strings.TrimSpace(pw); !passwordIs(t, store, "alice", pw) {
		t.Errorf("the announced password %q is not alice's", pw)
	}

	code, out, errOut = runCLI(t, nil, "users", "add", "gina", "--store", store)
	if code != 0 {
		t.Fatalf("users add: exit %d: %s", code, errOut)
	}
	if _, pw, ok = strings.Cut(out, "generated password: "); !ok {
		t.Fatalf("users add announced no generated password:\n%s", out)
	}
	if pw = strings.TrimSpace(pw); !passwordIs(t, store, "gina", pw) {
		t.Errorf("the announced password %q is not gina's", pw)
	}
}

// terminal is a pseudo-terminal a command runs on, with all it wrote to
// the screen.
type terminal struct {
	t      *testing.T
	ptmx   *os.File
	tty    *os.File
	screen *testenv.SyncBuffer
}

func newTerminal(t *testing.T) *terminal {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	term := &terminal{t: t, ptmx: ptmx, tty: tty, screen: &testenv.SyncBuffer{}}
	go io.Copy(term.screen, ptmx)
	// Closing does not wake a read blocked on a terminal: a command that
	// failed the test while reading is left behind, not waited for.
	t.Cleanup(func() { tty.Close(); ptmx.Close() })
	return term
}

// waitFor waits until the screen shows s.
func (term *terminal) waitFor(s string) {
	term.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(term.screen.String(), s) {
		if time.Now().After(deadline) {
			term.t.Fatalf("the terminal never showed %q; it shows:\n%s", s, term.screen)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// typeHidden waits for the prompt, then for the terminal to stop echoing,
// and types line and Enter.
func (term *terminal) typeHidden(prompt, line string) {
	term.t.Helper()
	term.waitFor(prompt)
	deadline := time.Now().Add(10 * time.Second)
	for {
		tio, err := unix.IoctlGetTermios(int(term.tty.Fd()), unix.TCGETS)
		if err != nil {
			term.t.Fatal(err)
		}
		if tio.Lflag&unix.ECHO == 0 {
			break
		}
		if time.Now().After(deadline) {
			term.t.Fatalf("the terminal still echoes after the prompt %q", prompt)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := term.ptmx.Write([]byte(line + "\n")); err != nil {
		term.t.Fatal(err)
	}
}

// run runs sessiond with args on the terminal (stdin, stdout and stderr)
// and returns a channel with its exit code.
func (term *terminal) run(env map[string]string, args ...string) <-chan int {
	code := make(chan int, 1)
	go func() {
		code <- Main(term.t.Context(), args, func(k string) string { return env[k] }, term.tty, term.tty, term.tty)
	}()
	return code
}

func exitCode(t *testing.T, c <-chan int) int {
	t.Helper()
	select {
	case code := <-c:
		return code
	case <-time.After(30 * time.Second):
		t.Fatal("the command did not finish")
		return -1
	}
}

// TestPasswordAtTerminal: at a terminal, users passwd and users add ask
// for the password and its confirmation, without echo; the typed password
// never appears on the screen, and it is the one set.
func TestPasswordAtTerminal(t *testing.T) {
	store := newDatabase(t)
	const typed = "Typed-Secret-4711"

	term := newTerminal(t)
	done := term.run(nil, "users", "passwd", "alice", "--store", store)
	term.typeHidden("New password for alice", typed)
	term.typeHidden("Repeat it: ", typed)
	if code := exitCode(t, done); code != 0 {
		t.Fatalf("users passwd at a terminal: exit %d:\n%s", code, term.screen)
	}
	term.waitFor("alice: done")
	if strings.Contains(term.screen.String(), typed) {
		t.Errorf("the typed password is on the screen:\n%s", term.screen)
	}
	if !passwordIs(t, store, "alice", typed) {
		t.Error("the password typed at the terminal is not alice's")
	}

	term = newTerminal(t)
	done = term.run(nil, "users", "add", "dora", "--roles", "editor", "--store", store)
	term.typeHidden("New password for dora", typed+"-dora")
	term.typeHidden("Repeat it: ", typed+"-dora")
	if code := exitCode(t, done); code != 0 {
		t.Fatalf("users add at a terminal: exit %d:\n%s", code, term.screen)
	}
	if strings.Contains(term.screen.String(), typed) || !passwordIs(t, store, "dora", typed+"-dora") {
		t.Errorf("users add at a terminal: the password shows or was not set:\n%s", term.screen)
	}
}

// TestPasswordMismatchChangesNothing: a confirmation that differs is
// refused, and the password stays what it was.
func TestPasswordMismatchChangesNothing(t *testing.T) {
	store := newDatabase(t)
	term := newTerminal(t)
	done := term.run(nil, "users", "passwd", "alice", "--store", store)
	term.typeHidden("New password for alice", "First-Try-12345")
	term.typeHidden("Repeat it: ", "Second-Try-12345")
	if code := exitCode(t, done); code != 1 {
		t.Errorf("a mismatched confirmation: exit %d, want 1:\n%s", code, term.screen)
	}
	term.waitFor("the passwords do not match; nothing changed")
	if !passwordIs(t, store, "alice", "alice-password-1") || passwordIs(t, store, "alice", "First-Try-12345") {
		t.Error("a mismatched confirmation changed the password")
	}

	term = newTerminal(t)
	done = term.run(nil, "users", "add", "erin", "--store", store)
	term.typeHidden("New password for erin", "First-Try-12345")
	term.typeHidden("Repeat it: ", "Second-Try-12345")
	if code := exitCode(t, done); code != 1 {
		t.Errorf("users add with a mismatched confirmation: exit %d, want 1", code)
	}
	if code, out, _ := runCLI(t, nil, "users", "list", "--store", store); code != 0 || strings.Contains(out, "erin") {
		t.Errorf("a mismatched confirmation created the user:\n%s", out)
	}
}

// TestPasswordAtTerminalEnterGenerates: Enter alone at the prompt
// generates a password and shows it.
func TestPasswordAtTerminalEnterGenerates(t *testing.T) {
	store := newDatabase(t)
	term := newTerminal(t)
	done := term.run(nil, "users", "passwd", "alice", "--store", store)
	term.typeHidden("New password for alice", "")
	if code := exitCode(t, done); code != 0 {
		t.Fatalf("exit %d:\n%s", code, term.screen)
	}
	term.waitFor("alice: done")
	_, pw, ok := strings.Cut(term.screen.String(), "generated password: ")
	if !ok {
		t.Fatalf("no generated password shown:\n%s", term.screen)
	}
	if pw = strings.TrimSpace(pw); !passwordIs(t, store, "alice", pw) {
		t.Errorf("the generated password %q is not alice's", pw)
	}
}

// TestPasswordFromPipeAndEnvironment: without a terminal, the password is
// SESSIOND_PASSWORD, else the first line of stdin, with no prompt.
func TestPasswordFromPipeAndEnvironment(t *testing.T) {
	store := newDatabase(t)
	var out, errOut bytes.Buffer
	if code := Main(t.Context(), []string{"users", "passwd", "alice", "--store", store}, func(string) string { return "" }, strings.NewReader("Piped-Password-1\nignored\n"), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, &errOut)
	}
	if strings.Contains(errOut.String(), "New password") || strings.Contains(out.String(), "generated") || !passwordIs(t, store, "alice", "Piped-Password-1") {
		t.Errorf("from a pipe: stdout %q, stderr %q", &out, &errOut)
	}
	if code, _, errOut := runCLI(t, map[string]string{"SESSIOND_PASSWORD": "Env-Password-1"}, "users", "passwd", "alice", "--store", store); code != 0 || !passwordIs(t, store, "alice", "Env-Password-1") {
		t.Errorf("from SESSIOND_PASSWORD: exit %d, %s", code, errOut)
	}
}

func TestSelfCommand(t *testing.T) {
	for arg0, want := range map[string]string{
		"/tmp/go-build1234567/b001/exe/sessiond":  "go run ./cmd/sessiond",
		"sessiond":                                "sessiond",
		"./sessiond":                              "./sessiond",
		"/usr/local/bin/sessiond":                 "/usr/local/bin/sessiond",
		"/tmp/go-build1234567/b001/sessiond.test": "/tmp/go-build1234567/b001/sessiond.test",
	} {
		if got := selfCommand(arg0); got != want {
			t.Errorf("selfCommand(%q) = %q, want %q", arg0, got, want)
		}
	}
}

// TestInterruptAtThePromptRestoresEcho: a command interrupted while it
// waits for a password (its context ends, as the first Ctrl-C does) stops
// at once, changes nothing, and leaves the terminal echoing again.
func TestInterruptAtThePromptRestoresEcho(t *testing.T) {
	store := newDatabase(t)
	term := newTerminal(t)
	ctx, cancel := context.WithCancel(t.Context())
	code := make(chan int, 1)
	go func() {
		code <- Main(ctx, []string{"users", "passwd", "alice", "--store", store}, func(string) string { return "" }, term.tty, term.tty, term.tty)
	}()
	term.waitFor("New password for alice")
	deadline := time.Now().Add(10 * time.Second)
	for {
		tio, err := unix.IoctlGetTermios(int(term.tty.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		if tio.Lflag&unix.ECHO == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the terminal still echoes after the prompt")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if c := exitCode(t, code); c != 1 {
		t.Errorf("interrupted at the prompt: exit %d, want 1:\n%s", c, term.screen)
	}
	tio, err := unix.IoctlGetTermios(int(term.tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if tio.Lflag&unix.ECHO == 0 {
		t.Error("the terminal does not echo after an interrupted prompt")
	}
	if !passwordIs(t, store, "alice", "alice-password-1") {
		t.Error("an interrupted prompt changed the password")
	}
}
