//go:build unix

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestProxyAssertion runs docs/proxies/nginx.conf and Caddyfile, as
// written, in front of sessiond serve --assertion: the app gets
// sessiond's X-Session-Assertion for the host the browser asked for, which
// verifies against the key set the proxy serves at
// /.well-known/jwks.json, and never the client's own.
func TestProxyAssertion(t *testing.T) {
	for _, p := range []struct {
		name  string
		start func(e *edge, bin string)
	}{
		{"nginx", func(e *edge, bin string) { startNginx(e, bin, nil) }},
		{"caddy", startCaddyFromDocs},
	} {
		t.Run(p.name, func(t *testing.T) {
			bin := proxyBinary(t, p.name)
			e := newEdge(t)
			in := start(t, "--public-url", "https://login.example.com", "--assertion")
			e.sessiond = strings.TrimPrefix(in.URL, "http://")
			p.start(e, bin)

			jwks := e.do(req{method: "GET", path: "/.well-known/jwks.json"})
			if jwks.StatusCode != 200 || !strings.Contains(string(jwks.body), `"keys"`) {
				t.Fatalf("GET /.well-known/jwks.json through the proxy: %d %s", jwks.StatusCode, jwks.body)
			}
			admin, _ := e.login("admin", adminPassword)
			forged := "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0."
			saw := e.appSaw(t, e.do(req{method: "GET", path: "/app/page", cookie: admin, header: map[string]string{"X-Session-Assertion": forged}}))
			got := saw.Header.Values("X-Session-Assertion")
			if len(got) != 1 || got[0] == forged {
				t.Fatalf("the app got X-Session-Assertion %q, want sessiond's alone", got)
			}
			claims := verifyWith(t, jwks.body, got[0], strings.TrimPrefix(e.origin, "https://"))
			if claims["preferred_username"] != "admin" {
				t.Errorf("claims %v", claims)
			}
			// Without a session the app is not reached, and a forged
			// assertion does not help.
			if r := e.do(req{method: "GET", path: "/app/page", header: map[string]string{"X-Session-Assertion": got[0]}}); r.StatusCode != 401 {
				t.Errorf("a replayed assertion without a session: %d, want 401", r.StatusCode)
			}
		})
	}
}

// startCaddyFromDocs runs docs/proxies/Caddyfile in Caddy as e's proxy,
// as TestProxyCaddy does.
func startCaddyFromDocs(e *edge, bin string) {
	t := e.t
	site := e.fromDocs("Caddyfile", map[string]string{
		"sessiond:8080": e.sessiond,
		"app:3000":      e.app.Listener.Addr().String(),
		appHost + " {":  fmt.Sprintf("https://%s:%s {\n\tbind 127.0.0.1\n\ttls %s %s", appHost, e.port, e.certFile, e.keyFile),
	})
	global := fmt.Sprintf("{\n\tadmin off\n\tauto_https disable_redirects\n\tstorage file_system %s\n}\n\n", filepath.Join(e.dir, "data"))
	conf := e.write("Caddyfile", global+string(readFile(t, site)))
	cmd := exec.Command(bin, "run", "--config", conf, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+e.dir, "XDG_DATA_HOME="+e.dir, "XDG_CONFIG_HOME="+e.dir)
	e.run(cmd)
}
