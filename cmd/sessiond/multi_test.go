package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/lease"
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
	in := &instance{t: t, dir: t.TempDir(), logs: &testenv.SyncBuffer{}}
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
		// Three masters: a user's keys share a slot, the token and ID
		// pointers are spread over the others.
		"redis-cluster": func(t *testing.T) string {
			testenv.Redis(t)
			return testenv.StartRedisCluster(t, 3).URL()
		},
		"redis-sentinel": func(t *testing.T) string {
			testenv.Redis(t)
			return testenv.StartRedisSentinel(t, 0).URL()
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
			// A login refused as busy (503: every password-hashing slot
			// taken, on a loaded machine) is tried again.
			var wg sync.WaitGroup
			var created atomic.Int64
			for i := range 8 {
				in := []*instance{a, b}[i%2]
				wg.Go(func() {
					for range 10 {
						r := in.do(req{method: "POST", path: "/api/v1/tokens", json: map[string]any{"username": "frank", "password": "frank-password-2"}})
						if r.StatusCode == 201 {
							created.Add(1)
						}
						if r.StatusCode != 503 {
							return
						}
						time.Sleep(50 * time.Millisecond)
					}
				})
			}
			wg.Wait()
			if created.Load() != 8 {
				t.Errorf("%d of 8 concurrent logins succeeded", created.Load())
			}
			if n := len(b.do(req{method: "GET", path: "/api/v1/admin/users/frank/sessions", cookie: admin}).json(t)["sessions"].([]any)); n != 4 {
				t.Errorf("frank holds %d sessions across two instances, limit 4", n)
			}
			if !a.resolves(admin) || id == "" {
				t.Error("the admin's own session was lost")
			}
		})
	}
}

// TestStoreOutage takes the store down under load (Redis: SIGKILL;
// PostgreSQL: an immediate shutdown, every server process gone at once),
// keeps it down for a second and brings it back. While it is down (from
// lease.Read after it stopped), sessiond never answers 200 for an unknown or revoked token, answers 503
// rather than 401 for a valid one, and fails /readyz; within 5 s of the
// store's return it resolves, signs in and revokes again without a
// restart; and it ends with as many goroutines as it had before the
// outage, give or take a few, after thousands of failed requests.
func TestStoreOutage(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		testenv.Redis(t)
		// Persisted, so that the sessions outlive the restart.
		redis := testenv.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
		// While Redis is down, the store retries a read until its timeout
		// (2s by default) before it fails: a shorter one makes more
		// requests fail in the second of the outage.
		testOutage(t, "Redis", redis.Kill, redis.Start,
			"--store", "redis://"+redis.Addr()+"/0?timeout=200ms", "--users", "sqlite:"+filepath.Join(t.TempDir(), "users.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		// A server of the test's own: the shared one must stay up.
		pg := testenv.StartPostgres(t)
		testOutage(t, "PostgreSQL", pg.Kill, pg.Start, "--store", pg.URL()) // the users too
	})
}

// testOutage runs TestStoreOutage on the sessiond process started with
// args, whose store kill stops and start starts again.
func testOutage(t *testing.T, name string, kill, start func(), args ...string) {
	in := startProcess(t, args...)
	valid, revoked := in.login("admin", adminPassword), in.login("admin", adminPassword)
	revokedID := in.do(req{method: "GET", path: "/api/v1/session", cookie: revoked}).json(t)["session"].(map[string]any)["id"].(string)
	in.do(req{method: "DELETE", path: "/api/v1/sessions/" + revokedID, cookie: valid})
	unknown := strings.Repeat("A", 43)
	tokens := map[string]string{"valid": valid, "revoked": revoked, "unknown": unknown}

	// Warm up: the store's connections, the server's caches.
	l := startLoad(in, tokens)
	time.Sleep(300 * time.Millisecond)
	l.stop()
	before := in.goroutines(0, 500*time.Millisecond)

	l = startLoad(in, tokens)
	time.Sleep(300 * time.Millisecond)
	kill()
	// A lookup that begins within lease.Read of the kill may still be
	// answered from the cache, under the lease of a fence answered before
	// it (see package lease): no revocation can complete meanwhile. From
	// then on, the store is down for every lookup.
	time.Sleep(lease.Read)
	l.phase.Store(int32(phaseDown))
	time.Sleep(time.Second)
	if r := in.do(req{method: "GET", path: "/resolve", cookie: valid}); r.StatusCode != 503 || r.errorCode(t) != "store_unavailable" {
		t.Errorf("resolve with %s down: %d %s, want 503", name, r.StatusCode, r.body)
	}
	if r := in.do(req{method: "GET", path: "/readyz"}); r.StatusCode != 503 {
		t.Errorf("readyz with %s down: %d, want 503", name, r.StatusCode)
	}
	l.phase.Store(int32(phaseRestarting)) // from here, the store may answer at any moment
	start()
	back := time.Now()
	l.phase.Store(int32(phaseBack))
	for _, step := range []struct {
		what string
		ok   func() bool
	}{
		{"resolve a valid session", func() bool { return in.do(req{method: "GET", path: "/resolve", cookie: valid}).StatusCode == 200 }},
		{"be ready", func() bool { return in.do(req{method: "GET", path: "/readyz"}).StatusCode == 200 }},
		{"sign in", func() bool {
			return in.do(req{method: "POST", path: "/login", json: map[string]any{"username": "admin", "password": adminPassword}}).StatusCode == 200
		}},
	} {
		for !step.ok() {
			if time.Since(back) > 5*time.Second {
				t.Fatalf("sessiond did not %s within 5s of %s returning:\n%s", step.what, name, in.logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("recovered %v after %s returned", time.Since(back).Round(time.Millisecond), name)
	time.Sleep(300 * time.Millisecond) // load on the recovered store
	counts := l.stop()
	t.Logf("resolves by phase, token and status: %v; the slowest answer to a request made while %s was down took %v", counts, name, l.slowest[phaseDown])

	for phase := range phaseAcross + 1 {
		for _, tok := range []string{"revoked", "unknown"} {
			if n := counts[answer{phase, tok, 200}]; n > 0 {
				t.Errorf("%s: %d resolves of the %s token answered 200", phase, n, tok)
			}
		}
		if n := counts[answer{phase, "valid", 401}]; n > 0 {
			t.Errorf("%s: %d resolves of the valid token answered 401 (a store failure taken for a missing session)", phase, n)
		}
	}
	if n := counts[answer{phaseDown, "valid", 200}]; n > 0 {
		t.Errorf("%d resolves of the valid token began and ended while %s was down, and answered 200: a session served without the store", n, name)
	}
	failed := 0
	for a, n := range counts {
		if a.phase == phaseDown {
			failed += n
		}
	}
	if failed < 4*goroutineSlack {
		t.Errorf("only %d requests while %s was down; the goroutine check needs more than a few", failed, name)
	}
	if counts[answer{phaseBack, "valid", 200}] == 0 {
		t.Errorf("no valid resolve answered 200 after %s returned", name)
	}

	// Revocation works again: the session of the sign-in above, revoked,
	// no longer resolves.
	tok, id := in.token("admin", adminPassword)
	if r := in.do(req{method: "DELETE", path: "/api/v1/sessions/" + id, cookie: valid}); r.StatusCode != 200 {
		t.Fatalf("revoke after recovery: %d %s", r.StatusCode, r.body)
	}
	// 429 means not found too: the load's invalid tokens used up this
	// client's allowance, which is checked only for a token not found.
	if r := in.do(req{method: "GET", path: "/resolve", bearer: tok}); r.StatusCode != 401 && r.StatusCode != 429 {
		t.Errorf("resolve of a session revoked after recovery: %d, want 401", r.StatusCode)
	}
	if m := string(in.do(req{method: "GET", path: "/metrics"}).body); strings.Contains(m, "sessiond_store_errors_total 0\n") {
		t.Error("store errors were not counted")
	}
	after := in.goroutines(before+goroutineSlack, 5*time.Second)
	t.Logf("goroutines: %d before the outage, %d after (%d failed requests)", before, after, failed)
	if after > before+goroutineSlack {
		t.Errorf("sessiond has %d goroutines after the outage, %d before: a leak", after, before)
	}
}

// goroutineSlack is how many more goroutines than before an outage
// sessiond may have after it: connections the store's client opened in the
// meantime, not one per failed request.
const goroutineSlack = 5

// phase is a stage of TestStoreOutage.
type phase int32

const (
	phaseUp         phase = iota
	phaseDown             // the store has been stopped
	phaseRestarting       // it is starting again
	phaseBack             // it answers
	phaseAcross           // (of an answer) began in one phase, ended in another
)

func (p phase) String() string {
	return [...]string{"up", "down", "restarting", "back", "across"}[p]
}

// answer is one kind of outcome of a resolve under load.
type answer struct {
	phase  phase
	token  string // valid, revoked or unknown
	status int    // 0: no answer
}

func (a answer) String() string { return fmt.Sprintf("%s/%s/%d", a.phase, a.token, a.status) }

// load is eight clients resolving a set of tokens in turn, as fast as
// sessiond answers.
type load struct {
	phase   atomic.Int32 // a phase
	halt    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	counts  map[answer]int
	slowest map[phase]time.Duration
}

func startLoad(in *instance, tokens map[string]string) *load {
	l := &load{halt: make(chan struct{}), counts: map[answer]int{}, slowest: map[phase]time.Duration{}}
	client := &http.Client{Timeout: 10 * time.Second}
	for range 8 {
		l.wg.Go(func() {
			for {
				for name, tok := range tokens {
					select {
					case <-l.halt:
						client.CloseIdleConnections()
						return
					default:
					}
					p := phase(l.phase.Load())
					a := answer{p, name, 0}
					r, _ := http.NewRequest("GET", in.URL+"/resolve", nil)
					r.AddCookie(&http.Cookie{Name: "__Host-sid", Value: tok})
					began := time.Now()
					res, err := client.Do(r)
					took := time.Since(began)
					if err == nil {
						io.Copy(io.Discard, res.Body)
						res.Body.Close()
						a.status = res.StatusCode
					}
					// A request can start while the store is down and end
					// after it came back (the store retries until its
					// timeout), answering 200 for the valid token.
					if phase(l.phase.Load()) != p {
						a.phase = phaseAcross
					}
					l.mu.Lock()
					l.counts[a]++
					l.slowest[p] = max(l.slowest[p], took)
					l.mu.Unlock()
				}
			}
		})
	}
	return l
}

// stop stops the clients, closes their connections and returns what they
// saw.
func (l *load) stop() map[answer]int {
	close(l.halt)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts
}

// goroutines returns the number of goroutines of the sessiond process,
// as its /metrics reports (go_goroutines): the least it reports within
// wait, asking every 50ms, or as soon as it is at most atMost. The
// goroutines of connections that just closed take a moment to end. Its
// requests go on connections of their own.
func (in *instance) goroutines(atMost int, wait time.Duration) int {
	in.t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	deadline := time.Now().Add(wait)
	least := -1
	for {
		res, err := client.Get(in.URL + "/metrics")
		if err != nil {
			in.t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		m := regexp.MustCompile(`(?m)^go_goroutines (\d+)$`).FindSubmatch(b)
		if m == nil {
			in.t.Fatalf("/metrics has no go_goroutines:\n%s", b)
		}
		n, _ := strconv.Atoi(string(m[1]))
		if least < 0 || n < least {
			least = n
		}
		if least <= atMost || time.Now().After(deadline) {
			return least
		}
		time.Sleep(50 * time.Millisecond)
	}
}
