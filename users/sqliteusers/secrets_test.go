package sqliteusers

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/users"
)

// TestNoPasswordStored runs an account's life through users.Accounts over
// a DB, appending the audit events a server would, and checks that no
// password reaches the audit table, and that no password, only hashes,
// reaches the file at all.
func TestNoPasswordStored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessiond.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	acc := users.NewAccounts(db, users.Params{Memory: 64, Time: 1, Threads: 1})
	first, wrong, second := "first-"+rand.Text(), "wrong-"+rand.Text(), "second-"+rand.Text()
	passwords := []string{first, wrong, second}

	log := func(typ string, u *users.User, reason string) {
		t.Helper()
		e := &audit.Event{Time: time.Now(), Type: typ, Actor: "cli", Reason: reason, IP: "192.0.2.1", UserAgent: "test"}
		if u != nil {
			e.UserID, e.Username = u.ID, u.Username
		}
		if err := db.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	u, err := acc.Add(ctx, "alice", first, []string{"user"})
	if err != nil {
		t.Fatal(err)
	}
	log("user.created", u, "")
	hashes := []string{u.PasswordHash}
	if _, err := acc.Authenticate(ctx, "alice", first); err != nil {
		t.Fatal(err)
	}
	log("login.succeeded", u, "")
	_, err = acc.Authenticate(ctx, "alice", wrong)
	if !errors.Is(err, users.ErrBadCredentials) {
		t.Fatalf("Authenticate with a wrong password: %v", err)
	}
	log("login.failed", u, err.Error())
	_, err = acc.Authenticate(ctx, "nobody", wrong)
	log("login.failed", &users.User{Username: "nobody"}, fmt.Sprint(err))
	if err := acc.SetPassword(ctx, u, second); err != nil {
		t.Fatal(err)
	}
	hashes = append(hashes, u.PasswordHash)
	log("password.changed", u, "")
	if err := acc.SetDisabled(ctx, u, true); err != nil {
		t.Fatal(err)
	}
	log("user.disabled", u, "")

	// The audit table has no column for a password or a hash...
	rows, err := db.r.QueryContext(ctx, "SELECT name FROM pragma_table_info('audit_events')")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(name, "pass") || strings.Contains(name, "hash") {
			t.Errorf("audit_events has a column %q", name)
		}
	}
	rows.Close()
	// ...and none of its values holds one.
	events := query(t, db, audit.Filter{})
	if len(events) != 6 {
		t.Fatalf("got %d events, want 6", len(events))
	}
	for _, e := range events {
		s := fmt.Sprintf("%+v", e)
		for _, secret := range append(append([]string{"$argon2id$"}, passwords...), hashes...) {
			if strings.Contains(s, secret) {
				t.Errorf("event %s holds %q", s, secret)
			}
		}
	}

	// The file holds the hashes, but none of the passwords.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	for _, f := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		raw = append(raw, b...)
	}
	if !bytes.Contains(raw, []byte(u.PasswordHash)) {
		t.Fatalf("the file does not hold the current hash: the test reads the wrong bytes")
	}
	for _, p := range passwords {
		if bytes.Contains(raw, []byte(p)) {
			t.Errorf("the database file holds the password %q", p)
		}
	}
}
