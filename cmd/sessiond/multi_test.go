package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
		"redis": func(t *testing.T) string {
			testenv.Redis(t)
			return "redis://" + testenv.StartRedis(t).Addr() + "/0"
		},
	}
	for name, storeURL := range stores {
		t.Run(name, func(t *testing.T) {
			store := storeURL(t)
			users := "sqlite:" + filepath.Join(t.TempDir(), "users.db") // shared too: accounts are not in Redis
			if !strings.HasPrefix(store, "redis") {
				users = store
			}
			a := startProcess(t, "--store", store, "--users", users, "--max-sessions-per-user", "4")
			b := startProcess(t, "--store", store, "--users", users, "--max-sessions-per-user", "4")

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

// TestRedisOutage kills Redis under load: sessiond never answers 200 for an
// unknown or revoked token while it is down, /readyz fails, and both heal
// by themselves when Redis returns.
func TestRedisOutage(t *testing.T) {
	testenv.Redis(t)
	redis := testenv.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	in := start(t, "--store", "redis://"+redis.Addr()+"/0", "--users", "sqlite:"+filepath.Join(t.TempDir(), "users.db"))
	valid, revoked := in.login("admin", adminPassword), in.login("admin", adminPassword)
	revokedID := in.do(req{method: "GET", path: "/api/v1/session", cookie: revoked}).json(t)["session"].(map[string]any)["id"].(string)
	in.do(req{method: "DELETE", path: "/api/v1/sessions/" + revokedID, cookie: valid})
	unknown := strings.Repeat("A", 43)

	stop := make(chan struct{})
	var bad, checked atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, tok := range []string{revoked, unknown} {
					if in.do(req{method: "GET", path: "/resolve", cookie: tok}).StatusCode == 200 {
						bad.Add(1)
					}
					checked.Add(1)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	redis.Kill()
	time.Sleep(time.Second)
	if r := in.do(req{method: "GET", path: "/resolve", cookie: valid}); r.StatusCode != 503 || r.errorCode(t) != "store_unavailable" {
		t.Errorf("resolve with Redis down: %d %s, want 503", r.StatusCode, r.body)
	}
	if r := in.do(req{method: "GET", path: "/readyz"}); r.StatusCode != 503 {
		t.Errorf("readyz with Redis down: %d", r.StatusCode)
	}
	redis.Start()
	back := time.Now()
	for in.do(req{method: "GET", path: "/resolve", cookie: valid}).StatusCode != 200 {
		if time.Since(back) > 5*time.Second {
			t.Fatal("sessiond did not recover within 5s of Redis returning")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("recovered %v after Redis returned", time.Since(back).Round(time.Millisecond))
	close(stop)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d of %d resolves of revoked or unknown tokens answered 200", bad.Load(), checked.Load())
	}
	if r := in.do(req{method: "GET", path: "/readyz"}); r.StatusCode != 200 {
		t.Errorf("readyz after recovery: %d", r.StatusCode)
	}
	if m := string(in.do(req{method: "GET", path: "/metrics"}).body); strings.Contains(m, "sessiond_store_errors_total 0\n") {
		t.Error("store errors were not counted")
	}
}
