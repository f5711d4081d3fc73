package pgusers

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/users"
)

// TestNoPasswordStored runs an account's life through users.Accounts over
// a DB, appending the audit events a server would, and checks that no
// password reaches the audit table, and that no password, only hashes,
// reaches the database at all.
func TestNoPasswordStored(t *testing.T) {
	db := openTemp(t)
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
	rows, err := db.pool.Query(ctx, "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'sessiond_audit_events'")
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

	// The database holds the hashes, but none of the passwords.
	raw := dump(t, db)
	if !bytes.Contains(raw, []byte(u.PasswordHash)) {
		t.Fatalf("the dump does not hold the current hash: the test reads the wrong bytes")
	}
	for _, p := range passwords {
		if bytes.Contains(raw, []byte(p)) {
			t.Errorf("the database holds the password %q", p)
		}
	}
}

// dump returns every row of every table in the DB's schema, as text.
func dump(t *testing.T, db *DB) []byte {
	t.Helper()
	rows, err := db.pool.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, table := range tables {
		rows, err := db.pool.Query(ctx, "SELECT t::text FROM "+pgx.Identifier{table}.Sanitize()+" t")
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			out = append(append(out, l...), '\n')
		}
	}
	return out
}
