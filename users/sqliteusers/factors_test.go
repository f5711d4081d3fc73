package sqliteusers

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/sessiond/sessiond/users"
)

// TestChallengeSweepIsBounded: a put deletes at most sweepBatch expired
// challenges, and puts drain any number of them.
func TestChallengeSweepIsBounded(t *testing.T) {
	db := openTemp(t)
	const expired = 150
	past := time.Now().Add(-time.Hour).UnixNano()
	for range expired {
		id := make([]byte, 32)
		rand.Read(id)
		if _, err := db.w.ExecContext(ctx, `INSERT INTO challenges (id_hash, kind, user_id, data, expires_at) VALUES (?1, 'k', '', x'', ?2)`, id, past); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (n int) {
		t.Helper()
		if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM challenges WHERE expires_at <= ?1`, time.Now().UnixNano()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	put := func() {
		t.Helper()
		if err := db.PutChallenge(ctx, &users.Challenge{ID: rand.Text(), Kind: "k", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	put()
	if n := count(); n != expired-sweepBatch {
		t.Errorf("expired challenges after one put: got %d, want %d", n, expired-sweepBatch)
	}
	put()
	put()
	if n := count(); n != 0 {
		t.Errorf("expired challenges after three puts: got %d, want 0", n)
	}
}
