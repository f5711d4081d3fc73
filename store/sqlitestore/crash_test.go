package sqlitestore

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/session/storetest"
)

// crashDBEnv names the database file TestCrashChild writes to.
const crashDBEnv = "SQLITESTORE_CRASH_DB"

// TestCrashDurability runs TestCrashChild in a child process that creates
// sessions and prints each ID once Create has returned, kills it with
// SIGKILL in the middle of its work, and checks that every session the
// child reported is in the file. (This tests a killed process, not a power
// loss; the latter is up to synchronous=FULL and the disk.)
func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	const acked = 200
	path := filepath.Join(t.TempDir(), "sessions.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDBEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	var ids []string
	lines := bufio.NewScanner(out)
	for len(ids) < acked && lines.Scan() {
		if id, ok := strings.CutPrefix(lines.Text(), "created "); ok {
			ids = append(ids, id)
		}
	}
	if len(ids) < acked {
		t.Fatalf("the child reported %d sessions and stopped (%v), want %d", len(ids), lines.Err(), acked)
	}
	// The child is still creating sessions: kill it mid-write.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed = true
	cmd.Wait()

	st := openAt(t, path)
	for _, id := range ids {
		if _, err := st.ByID(ctx, id); err != nil {
			t.Errorf("session %s, acknowledged before the kill: %v", id, err)
		}
	}
	var check string
	if err := st.r.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check after the kill: %q, %v", check, err)
	}
}

// TestCrashChild is TestCrashDurability's child process, not a test of its
// own: it creates sessions in the file named by $SQLITESTORE_CRASH_DB and
// prints "created ID" after each Create returns, until it is killed (or,
// if the parent is gone, for at most a minute).
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashDBEnv)
	if path == "" {
		t.Skip("helper process for TestCrashDurability")
	}
	start := time.Now()
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	user := storetest.NewID()
	for i := 0; time.Since(start) < time.Minute; i++ {
		// Alternate the two ways Create commits: a single INSERT, and an
		// IMMEDIATE transaction for a limit (high enough to evict nothing).
		lim := session.Limit{}
		if i%2 == 1 {
			lim.Max = 1 << 30
		}
		s := storetest.NewSession(user)
		if _, err := st.Create(ctx, s, lim); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stdout.WriteString("created " + s.ID + "\n"); err != nil {
			return // the parent has gone
		}
	}
}
