package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAssertionPythonExample runs the Python example of docs/assertions.md
// as written, with PyJWT, against a running sessiond's key set: a valid
// assertion gives its claims; a tampered one, one for another host and
// none at all give nothing. The one change to the example is where the
// key set is fetched from: this sessiond rather than its public URL.
// Without a Python that has PyJWT (Debian's python3-jwt, which .ci/run
// installs) it skips, and fails under CI.
func TestAssertionPythonExample(t *testing.T) {
	py := pythonWithPyJWT(t)
	in := start(t, "--assertion", "--public-url", "https://login.example.com")
	token := in.login("admin", adminPassword)
	assertionFor := func(host string) string {
		r := in.do(req{method: "GET", path: "/resolve", cookie: token, header: map[string]string{"X-Forwarded-Host": host}})
		if r.StatusCode != 200 || r.Header.Get("X-Session-Assertion") == "" {
			t.Fatalf("resolve for %s: %d", host, r.StatusCode)
		}
		return r.Header.Get("X-Session-Assertion")
	}
	valid := assertionFor("app.example.com")
	other := assertionFor("other.example.com")
	parts := strings.Split(valid, ".")
	flip := map[byte]byte{'A': 'B', 'B': 'A'}
	p := []byte(parts[1])
	if c, ok := flip[p[10]]; ok {
		p[10] = c
	} else {
		p[10] = 'A'
	}
	tampered := parts[0] + "." + string(p) + "." + parts[2]

	doc := string(readFile(t, filepath.Join("..", "..", "docs", "assertions.md")))
	_, rest, ok := strings.Cut(doc, "```python\n")
	example, _, ok2 := strings.Cut(rest, "```")
	const fetch = `ISSUER + "/.well-known/jwks.json"`
	if !ok || !ok2 || !strings.Contains(example, fetch) {
		t.Fatalf("docs/assertions.md has no Python example fetching %s: keep the docs and this test in step", fetch)
	}
	script := "import json, sys\nJWKS_URL = sys.argv[1]\n" + strings.Replace(example, fetch, "JWKS_URL", 1) +
		"\nfor line in sys.stdin:\n    print(json.dumps(identity({\"X-Session-Assertion\": line.strip()} if line.strip() else {})))\n"
	cmd := exec.Command(py, "-c", script, in.URL+"/.well-known/jwks.json")
	cmd.Stdin = strings.NewReader(strings.Join([]string{valid, tampered, other, ""}, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the Python example: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 4 {
		t.Fatalf("the Python example printed %d lines, want 4:\n%s", len(lines), out)
	}
	if !strings.Contains(lines[0], `"preferred_username": "admin"`) || !strings.Contains(lines[0], `"aud": "app.example.com"`) {
		t.Errorf("a valid assertion: %s, want its claims", lines[0])
	}
	for i, name := range []string{"", "a tampered assertion", "one for another host", "none"} {
		if i > 0 && lines[i] != "null" {
			t.Errorf("%s: %s, want null", name, lines[i])
		}
	}
}

// pythonWithPyJWT returns a Python interpreter that can import PyJWT with
// its ES256 support, or skips the test (fails it under CI).
func pythonWithPyJWT(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import jwt, cryptography").Run() == nil {
			return py
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no python3 with PyJWT (Debian's python3-jwt): .ci/run installs it")
	}
	t.Skip("no python3 with PyJWT: apt-get install python3-jwt to run the Python example of docs/assertions.md")
	return ""
}
