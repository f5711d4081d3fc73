package server

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sessiond/sessiond/store/memstore"
)

// The monitoring files operators import: docs/monitoring/.
const monitoringDir = "../docs/monitoring"

// promtool returns the path of Prometheus' promtool, skipping the test
// (failing it in CI) when there is none.
func promtool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("promtool is not installed, and CI must check the alert rules and the dashboard's queries with it: .ci/run installs it with apt-get (Debian's prometheus package)")
	}
	t.Skip("promtool is not installed: skipping the check of docs/monitoring (install it, e.g. apt-get install prometheus)")
	return ""
}

// dashboardQueries returns the PromQL of every panel of the dashboard,
// with Grafana's variables replaced by values Prometheus accepts.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(monitoringDir, "sessiond-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			e := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*").Replace(tg.Expr)
			if strings.Contains(e, "$") {
				t.Errorf("panel %q: a variable the dashboard does not define: %s", p.Title, tg.Expr)
			}
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	return out
}

// TestMonitoringNamesRealMetrics: every sessiond metric the dashboard and
// the alert rules query is one sessiond serves, so that a renamed metric
// cannot leave them silently empty.
func TestMonitoringNamesRealMetrics(t *testing.T) {
	ts := newTestServerWith(t, memstore.New(), Config{})
	families, err := ts.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	for _, f := range families {
		served = append(served, f.GetName())
	}
	rules, err := os.ReadFile(filepath.Join(monitoringDir, "sessiond-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(rules) + strings.Join(dashboardQueries(t), "\n")
	names := regexp.MustCompile(`sessiond_[a-z_]+`).FindAllString(text, -1)
	if len(names) == 0 {
		t.Fatal("no sessiond metric is queried")
	}
	for _, n := range names {
		base := n
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(n, suffix); ok && slices.Contains(served, b) {
				base = b
			}
		}
		if !slices.Contains(served, base) {
			t.Errorf("docs/monitoring queries %s, which sessiond does not serve", n)
		}
	}
}

// TestMonitoringPassesPromtool: the alert rules pass promtool check rules
// and their unit tests (sessiond-alerts.test.yml: quiet when all is well,
// each alert firing on its symptom), and every dashboard query parses as
// PromQL.
func TestMonitoringPassesPromtool(t *testing.T) {
	bin := promtool(t)
	run := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run(monitoringDir, "check", "rules", "sessiond-alerts.yml")
	run(monitoringDir, "test", "rules", "sessiond-alerts.test.yml")

	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, q := range dashboardQueries(t) {
		b, _ := json.Marshal(q)
		fmt.Fprintf(&rules, "      - record: dashboard:query_%d\n        expr: %s\n", i, b)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard.yml"), []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	run(dir, "check", "rules", "dashboard.yml")
}
