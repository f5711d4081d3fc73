package pgusers

import (
	"testing"
	"time"

	"github.com/sessiond/sessiond/users"
)

// TestChallengeSweepIsBounded: a put deletes at most sweepBatch expired
// challenges, and puts drain any number of them.
func TestChallengeSweepIsBounded(t *testing.T) {
	db := openTemp(t)
	const expired = 150
	if _, err := db.pool.Exec(ctx, `INSERT INTO sessiond_challenges (id_hash, kind, user_id, data, expires_at)
		SELECT sha256(i::text::bytea), 'k', '', '', now() - interval '1 hour' FROM generate_series(1, $1) AS i`, expired); err != nil {
		t.Fatal(err)
	}
	count := func() (n int) {
		t.Helper()
		if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM sessiond_challenges WHERE expires_at <= now()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	put := func() {
		t.Helper()
		if err := db.PutChallenge(ctx, &users.Challenge{ID: time.Now().String() + "-challenge", Kind: "k", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
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
