package main

import (
	"encoding/json"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/webhook"
	"github.com/sessiond/sessiond/webhook/outboxtest"
)

// freeLoopback returns a loopback address nothing listens on.
func freeLoopback(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// auditIDs returns the IDs and types of every event in the audit log.
func auditIDs(t *testing.T, in *instance, admin string) map[int64]string {
	t.Helper()
	r := in.do(req{method: "GET", path: "/api/v1/admin/audit?limit=1000", cookie: admin})
	if r.StatusCode != 200 {
		t.Fatalf("audit: %d %s", r.StatusCode, r.body)
	}
	var v struct{ Events []audit.Event }
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatal(err)
	}
	ids := map[int64]string{}
	for _, e := range v.Events {
		ids[e.ID] = e.Type
	}
	return ids
}

// TestWebhookEventsSurviveKill9: events acknowledged (answered requests
// whose audit events are in the log) while the receiver is down are
// delivered after sessiond is killed with SIGKILL and started again, each
// once, signed.
func TestWebhookEventsSurviveKill9(t *testing.T) {
	for name, db := range map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "sessiond.db") },
		"postgres": func(t *testing.T) string { return testenv.PostgresSchema(t) },
	} {
		t.Run(name, func(t *testing.T) {
			store := db(t)
			addr := freeLoopback(t)
			args := []string{"--store", store, "--webhook", "http://" + addr + "/hook", "--webhook-secret", outboxtest.Secret, "--webhook-timeout", "1s"}
			a := startProcess(t, args...)
			admin := a.login("admin", adminPassword)
			for i := range 5 {
				a.addUser(admin, "user"+strconv.Itoa(i), "a-long-password-"+strconv.Itoa(i))
			}
			a.do(req{method: "POST", path: "/login", json: map[string]any{"username": "user1", "password": "wrong-password"}})
			acked := auditIDs(t, a, admin)
			if len(acked) < 8 {
				t.Fatalf("%d events in the audit log, want at least 8", len(acked))
			}
			a.stop() // SIGKILL

			r := outboxtest.NewReceiverAt(t, outboxtest.Secret, addr)
			b := startProcess(t, args...)
			// A delivery in flight at the kill waits for its lease (3s).
			deadline := time.Now().Add(30 * time.Second)
			for {
				got := r.Got()
				missing := 0
				for id := range acked {
					if got[webhook.MessageID(id)] == 0 {
						missing++
					}
				}
				if missing == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d acknowledged events not delivered after the restart", missing, len(acked))
				}
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond)
			got := r.Got()
			for id, typ := range acked {
				mid := webhook.MessageID(id)
				if got[mid] != 1 {
					t.Errorf("event %d delivered %d times, want once", id, got[mid])
				}
				if p, _ := r.Payload(mid); p.Type != typ || p.Data.ID != id {
					t.Errorf("event %d: payload %+v, want type %s", id, p, typ)
				}
			}
			if bad := r.Bad(); len(bad) > 0 {
				t.Errorf("refused: %v", bad)
			}
			_ = b
		})
	}
}

// TestWebhookAdmin: the admin view shows a failing hook (URL without its
// user-info, failure, dead letters), non-admins get 403, a retry from the
// API delivers the dead letters and is audited; the metrics count it.
func TestWebhookAdmin(t *testing.T) {
	addr := freeLoopback(t)
	hookURL := "http://hookuser:hookpass@" + addr + "/hook"
	in := start(t, "--webhook", hookURL, "--webhook-secret", outboxtest.Secret, "--webhook-max-attempts", "1", "--internal-listen", "127.0.0.1:0")
	admin := in.login("admin", adminPassword)
	in.addUser(admin, "eve", "eve-long-password")
	eve := in.login("eve", "eve-long-password")

	var hooks []webhook.HookStatus
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := in.do(req{method: "GET", path: "/api/v1/admin/webhooks", cookie: admin})
		if r.StatusCode != 200 {
			t.Fatalf("GET /api/v1/admin/webhooks: %d %s", r.StatusCode, r.body)
		}
		if strings.Contains(string(r.body), "hookpass") || strings.Contains(string(r.body), "hookuser") {
			t.Fatalf("the admin view shows the URL's user-info: %s", r.body)
		}
		var v struct{ Webhooks []webhook.HookStatus }
		json.Unmarshal(r.body, &v)
		hooks = v.Webhooks
		if len(hooks) == 1 && hooks[0].Dead >= 4 && hooks[0].Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhooks %s, want one hook with every event a dead letter", r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	h := hooks[0]
	if h.FailingSince == nil || !strings.Contains(h.LastError, "refused") || !strings.HasPrefix(h.URL, "http://xxxxx@") {
		t.Errorf("hook %+v: want failing since a time, a connection-refused error, a redacted URL", h)
	}
	for _, r := range []resp{
		in.do(req{method: "GET", path: "/api/v1/admin/webhooks", cookie: eve}),
		in.do(req{method: "POST", path: "/api/v1/admin/webhooks/" + h.ID + "/retry", cookie: eve}),
	} {
		if r.StatusCode != 403 || r.errorCode(t) != "forbidden" {
			t.Errorf("%s as a non-admin: %d %s", r.Request.URL.Path, r.StatusCode, r.body)
		}
	}
	if r := in.do(req{method: "POST", path: "/api/v1/admin/webhooks/nope/retry", cookie: admin}); r.StatusCode != 404 || r.errorCode(t) != "not_found" {
		t.Errorf("retry of an unknown hook: %d %s", r.StatusCode, r.body)
	}
	if r := in.do(req{method: "GET", path: "/admin/webhooks", cookie: admin}); r.StatusCode != 200 || !strings.Contains(string(r.body), h.ID+"/retry") || strings.Contains(string(r.body), "<script") {
		t.Errorf("GET /admin/webhooks: %d, want the page with a retry form and no script:\n%s", r.StatusCode, r.body)
	}
	m := scrape(t, in.Internal)
	for _, series := range []string{`sessiond_webhook_deliveries_total{hook="` + h.ID + `",outcome="delivered"}`, `sessiond_webhook_deliveries_total{hook="` + h.ID + `",outcome="failed"}`,
		`sessiond_webhook_deliveries_total{hook="` + h.ID + `",outcome="dead"}`, `sessiond_webhook_backlog{hook="` + h.ID + `"}`, `sessiond_webhook_dead_letters{hook="` + h.ID + `"}`} {
		if _, ok := m[series]; !ok {
			t.Errorf("no series %s", series)
		}
	}
	if m[`sessiond_webhook_dead_letters{hook="`+h.ID+`"}`] != float64(h.Dead) || m[`sessiond_webhook_deliveries_total{hook="`+h.ID+`",outcome="dead"}`] < float64(h.Dead) ||
		m[`sessiond_webhook_deliveries_total{hook="`+h.ID+`",outcome="delivered"}`] != 0 {
		t.Errorf("metrics: %v", m)
	}

	rcv := outboxtest.NewReceiverAt(t, outboxtest.Secret, addr)
	r := in.do(req{method: "POST", path: "/admin/webhooks/" + h.ID + "/retry", cookie: admin, header: map[string]string{"Origin": in.URL}, form: "x=1"})
	if r.StatusCode != 303 || !strings.Contains(r.Header.Get("Location"), "webhooks-retried") {
		t.Fatalf("retry form: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	rcv.WaitFor(h.Dead, 20*time.Second)
	ids := auditIDs(t, in, admin)
	retried := false
	for _, typ := range ids {
		retried = retried || typ == audit.WebhookRetried
	}
	if !retried {
		t.Error("the retry is not in the audit log")
	}
	if bad := rcv.Bad(); len(bad) > 0 {
		t.Errorf("refused: %v", bad)
	}
	logs := in.logs.String()
	if !strings.Contains(logs, "webhook delivery failed") {
		t.Error("no log line of the failed deliveries")
	}
	if strings.Contains(logs, "hookpass") || strings.Contains(logs, strings.TrimPrefix(outboxtest.Secret, "whsec_")) {
		t.Error("the log holds the hook's password or its secret")
	}
}

// TestWebhookFlags: a hook needs a secret, a valid one; no message quotes
// a secret.
func TestWebhookFlags(t *testing.T) {
	const leaked = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--webhook", "https://hooks.example/in"}, "has no secret"},
		{[]string{"--webhook", "https://hooks.example/in", "--webhook-secret", "whsec_short"}, "whsec_ followed by"},
		{[]string{"--webhook", "https://u:pw@hooks.example/in " + leaked + "x"}, "whsec_ followed by"},
		{[]string{"--webhook", "ftp://hooks.example/in", "--webhook-secret", leaked}, "http"},
		{[]string{"--webhook-secret", leaked}, "no --webhook"},
		{[]string{"--webhook", "https://hooks.example/in", "--webhook-secret", leaked, "--webhook-max-attempts", "0"}, "--webhook-max-attempts"},
	} {
		var out testenv.SyncBuffer
		code := Main(t.Context(), append([]string{"serve", "--store", "memory:", "--users", "sqlite:" + filepath.Join(t.TempDir(), "u.db"), "--listen", "127.0.0.1:0"}, tc.args...), func(string) string { return "" }, strings.NewReader(""), &out, &out)
		if code == 0 || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%v: exit %d, output %q; want an error with %q", tc.args, code, out.String(), tc.want)
		}
		if strings.Contains(out.String(), "c2VjcmV0") || strings.Contains(out.String(), ":pw@") {
			t.Errorf("%v: the output quotes a secret: %q", tc.args, out.String())
		}
	}
}

func TestWebhookSecretCommand(t *testing.T) {
	var out, errOut strings.Builder
	if code := Main(t.Context(), []string{"webhook-secret"}, func(string) string { return "" }, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if _, err := webhook.ParseSecret(strings.TrimSpace(out.String())); err != nil {
		t.Fatalf("webhook-secret printed %q: %v", out.String(), err)
	}
}

// TestWebhookTwoInstances runs two sessiond processes on one database
// with the same hook: every event made on either arrives once, none
// twice, none missing.
func TestWebhookTwoInstances(t *testing.T) {
	for name, db := range map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "sessiond.db") },
		"postgres": func(t *testing.T) string { return testenv.PostgresSchema(t) },
	} {
		t.Run(name, func(t *testing.T) {
			store := db(t)
			r := outboxtest.NewReceiver(t, outboxtest.Secret)
			args := []string{"--store", store, "--webhook", r.URL() + "/hook", "--webhook-secret", outboxtest.Secret}
			a := startProcess(t, args...)
			b := startProcess(t, args...)
			admin := a.login("admin", adminPassword)
			id := a.addUser(admin, "frank", "frank-long-password")
			const changes = 100
			for i := range changes {
				in := a
				if i%2 == 1 {
					in = b
				}
				role := "r" + strconv.Itoa(i)
				if res := in.do(req{method: "PUT", path: "/api/v1/admin/users/" + id + "/roles", cookie: admin, json: map[string]any{"roles": []string{role}}}); res.StatusCode != 200 {
					t.Fatalf("roles: %d %s", res.StatusCode, res.body)
				}
			}
			acked := auditIDs(t, a, admin)
			if len(acked) < changes {
				t.Fatalf("%d events in the audit log, want at least %d", len(acked), changes)
			}
			r.WaitFor(len(acked), 60*time.Second)
			time.Sleep(300 * time.Millisecond) // a duplicate would arrive now
			got := r.Got()
			for id := range acked {
				if n := got[webhook.MessageID(id)]; n != 1 {
					t.Errorf("event %d delivered %d times, want once", id, n)
				}
			}
			if bad := r.Bad(); len(bad) > 0 {
				t.Errorf("refused: %v", bad)
			}
		})
	}
}

// TestNoWebhooks: without --webhook the admin view lists none, and says
// how to add one.
func TestNoWebhooks(t *testing.T) {
	in := start(t)
	admin := in.login("admin", adminPassword)
	if r := in.do(req{method: "GET", path: "/api/v1/admin/webhooks", cookie: admin}); r.StatusCode != 200 || strings.TrimSpace(string(r.body)) != `{"webhooks":[]}` {
		t.Errorf("GET /api/v1/admin/webhooks: %d %s", r.StatusCode, r.body)
	}
	if r := in.do(req{method: "GET", path: "/admin/webhooks", cookie: admin}); r.StatusCode != 200 || !strings.Contains(string(r.body), "No webhook is configured") {
		t.Errorf("GET /admin/webhooks: %d %s", r.StatusCode, r.body)
	}
}
