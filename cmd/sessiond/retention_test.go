package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/users/sqliteusers"
)

func TestAuditRetentionSetting(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "sessiond.conf")
	if err := os.WriteFile(cfg, []byte("audit-retention = 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want time.Duration
	}{
		{"default", nil, nil, 90 * 24 * time.Hour},
		{"flag", []string{"--audit-retention", "720h"}, nil, 720 * time.Hour},
		{"environment", nil, map[string]string{"SESSIOND_AUDIT_RETENTION": "24h"}, 24 * time.Hour},
		{"config file: forever", nil, map[string]string{"SESSIOND_CONFIG": cfg}, 0},
	}
	for _, tt := range tests {
		o, _, err := parseOptions("t", tt.args, func(k string) string { return tt.env[k] }, io.Discard, nil)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if o.auditRetention != tt.want {
			t.Errorf("%s: --audit-retention is %v, want %v", tt.name, o.auditRetention, tt.want)
		}
	}

	var out bytes.Buffer
	args := []string{"serve", "--listen", "127.0.0.1:0", "--store", "sqlite:" + filepath.Join(t.TempDir(), "x.db"), "--audit-retention", "-1h"}
	if code := Main(t.Context(), args, func(string) string { return "" }, nil, &out, &out); code == 0 || !strings.Contains(out.String(), "--audit-retention") {
		t.Errorf("a negative --audit-retention: exit %d, message %q; want a failure that names the flag", code, out.String())
	}
}

// TestSweepDeletesOldAuditEvents builds sessiond from its flags on each
// kind of --users database, runs its periodic sweep once, and checks that
// the audit events older than --audit-retention are gone and the newer
// ones stay; with --audit-retention 0 every event stays.
func TestSweepDeletesOldAuditEvents(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, retention := range []string{"720h", "0"} {
			t.Run(backend+"/"+retention, func(t *testing.T) {
				store := "sqlite:" + filepath.Join(t.TempDir(), "sessiond.db")
				if backend == "postgres" {
					store = testenv.PostgresSchema(t)
				}
				o, _, err := parseOptions("t", []string{"--store", store, "--audit-retention", retention}, func(string) string { return "" }, io.Discard, nil)
				if err != nil {
					t.Fatal(err)
				}
				a, err := open(o, io.Discard)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(a.close)

				now := time.Now().UTC()
				var all, recent []int64 // newest first
				for _, age := range []time.Duration{400 * 24 * time.Hour, 45 * 24 * time.Hour, 31 * 24 * time.Hour, 29 * 24 * time.Hour, time.Hour} {
					e := &audit.Event{Time: now.Add(-age), Type: "login.succeeded", UserID: "u_1", Actor: "u_1"}
					if err := a.stores.Directory.Append(t.Context(), e); err != nil {
						t.Fatal(err)
					}
					all = append([]int64{e.ID}, all...)
					if age < 30*24*time.Hour {
						recent = append([]int64{e.ID}, recent...)
					}
				}
				a.sweepOnce(t.Context(), now)

				want := recent
				if retention == "0" {
					want = all
				}
				got, err := a.stores.Directory.Query(t.Context(), audit.Filter{})
				if err != nil {
					t.Fatal(err)
				}
				var ids []int64
				for _, e := range got {
					ids = append(ids, e.ID)
				}
				if !slices.Equal(ids, want) {
					t.Errorf("events after the sweep: got IDs %v, want %v (of %v)", ids, want, all)
				}
			})
		}
	}
}

// TestPruneAuditBatches checks that pruneAudit keeps deleting batches
// until one comes back short, whether or not the number of old events is a
// multiple of the batch.
func TestPruneAuditBatches(t *testing.T) {
	for _, old := range []int{5, 4, 0} {
		db, err := sqliteusers.Open(filepath.Join(t.TempDir(), "sessiond.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		now := time.Now()
		for i := range old {
			if err := db.Append(t.Context(), &audit.Event{Time: now.Add(-time.Duration(i+2) * time.Hour), Type: "x"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Append(t.Context(), &audit.Event{Time: now, Type: "x"}); err != nil {
			t.Fatal(err)
		}
		if n, err := pruneAudit(t.Context(), db, now.Add(-time.Hour), 2); err != nil || n != old {
			t.Errorf("pruneAudit of %d old events in batches of 2: got %d, %v", old, n, err)
		}
		if left, err := db.Query(t.Context(), audit.Filter{}); err != nil || len(left) != 1 {
			t.Errorf("after pruneAudit of %d old events: %d events left (%v), want 1", old, len(left), err)
		}
	}
}
