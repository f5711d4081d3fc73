package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/testenv"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
	buildOut  []byte
)

// sessiondBinary builds cmd/sessiond once per test run.
func sessiondBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sessiond-bin")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "sessiond")
		buildOut, buildErr = exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, buildOut)
	}
	return binary
}

// startProcess runs "sessiond serve" with args as a process of its own.
func startProcess(t *testing.T, args ...string) *instance {
	t.Helper()
	in := &instance{t: t, dir: t.TempDir(), logs: &syncBuffer{}}
	cmd := exec.Command(sessiondBinary(t), append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "SESSIOND_ADMIN_PASSWORD="+adminPassword)
	cmd.Dir = in.dir
	stderr, _ := cmd.StderrPipe()
	cmd.Stdout = in.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in.stop = func() int { cmd.Process.Kill(); cmd.Wait(); return 0 }
	t.Cleanup(func() { in.stop() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			in.logs.Write(append(sc.Bytes(), '\n'))
			if m := listening.FindSubmatch(sc.Bytes()); m != nil {
				found <- string(m[1])
			}
		}
	}()
	select {
	case in.URL = <-found:
		return in
	case <-time.After(20 * time.Second):
		t.Fatalf("sessiond did not start:\n%s", in.logs)
		return nil
	}
}

// TestTwoInstancesShareOneStore runs two sessiond processes on one store:
// what one does, the other sees on its very next request.
func TestTwoInstancesShareOneStore(t *testing.T) {
	stores := map[string]func(t *testing.T) string{
		"sqlite": func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "shared.db") },
		"postgres": func(t *testing.T) string {
			return testenv.PostgresSchema(t)
		},
	}
	for name, storeURL := range stores {
		t.Run(name, func(t *testing.T) {
			store := storeURL(t)
			a := startProcess(t, "--store", store, "--max-sessions-per-user", "4")
			b := startProcess(t, "--store", store, "--max-sessions-per-user", "4")

			admin := a.login("admin", adminPassword)
			if !b.resolves(admin) {
				t.Fatal("a session made on A does not resolve on B")
			}
			id := b.do(req{method: "GET", path: "/api/v1/session", cookie: admin}).json(t)["session"].(map[string]any)["id"].(string)
			a.addUser(admin, "frank", "frank-password-1")

			f1 := a.login("frank", "frank-password-1")
			f1ID := a.do(req{method: "GET", path: "/api/v1/session", cookie: f1}).json(t)["session"].(map[string]any)["id"].(string)
			if !a.resolves(f1) {
				t.Fatal("frank's session does not resolve")
			}
			if r := b.do(req{method: "DELETE", path: "/api/v1/admin/sessions/" + f1ID, cookie: admin}); r.StatusCode != 200 {
				t.Fatalf("revoke on B: %d %s", r.StatusCode, r.body)
			}
			if a.resolves(f1) {
				t.Fatal("A still accepts a session revoked on B")
			}

			tok, _ := a.token("frank", "frank-password-1")
			onB := b.login("frank", "frank-password-1")
			if r := a.do(req{method: "POST", path: "/api/v1/password", bearer: tok, json: map[string]any{"current_password": "frank-password-1", "new_password": "frank-password-2"}}); r.StatusCode != 200 {
				t.Fatalf("password change on A: %d %s", r.StatusCode, r.body)
			}
			if b.resolves(onB) {
				t.Fatal("B still accepts a session the password change on A ended")
			}

			// The per-user limit holds across both under concurrent logins.
			var wg sync.WaitGroup
			for i := range 8 {
				in := []*instance{a, b}[i%2]
				wg.Go(func() {
					in.do(req{method: "POST", path: "/api/v1/tokens", json: map[string]any{"username": "frank", "password": "frank-password-2"}})
				})
			}
			wg.Wait()
			if n := len(b.do(req{method: "GET", path: "/api/v1/admin/users/frank/sessions", cookie: admin}).json(t)["sessions"].([]any)); n != 4 {
				t.Errorf("frank holds %d sessions across two instances, limit 4", n)
			}
			if !a.resolves(admin) || id == "" {
				t.Error("the admin's own session was lost")
			}
		})
	}
}
