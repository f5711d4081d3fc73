package pgstore

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
)

// BenchmarkByHash looks up random live sessions by token hash, the work
// of validating one request, in tables of different sizes. Each lookup is
// one round trip to the server.
func BenchmarkByHash(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			url := testenv.PostgresSchema(b)
			st := openAt(b, url)
			start := time.Now()
			hashes := bulkLoad(b, st, n)
			b.Logf("loaded %d sessions in %v", n, time.Since(start).Round(time.Millisecond))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				// Step through the hashes by a stride coprime with n, so
				// successive lookups land far apart in the index.
				i = (i + 7919) % n
				if _, err := st.ByHash(ctx, hashes[i]); err != nil {
					b.Fatalf("ByHash: %v", err)
				}
			}
		})
	}
}

// BenchmarkByHashParallel is BenchmarkByHash with requests from many
// goroutines at once, over the pool's connections, with the cache on
// (where lookups share fences) and off.
func BenchmarkByHashParallel(b *testing.B) {
	const n = 1000
	for _, cache := range []string{"on", "off"} {
		b.Run("cache="+cache, func(b *testing.B) {
			st := openAt(b, withParam(b, testenv.PostgresSchema(b), "cache", cache))
			hashes := bulkLoad(b, st, n)
			for _, h := range hashes {
				if _, err := st.ByHash(ctx, h); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.SetParallelism(16)
			var fences int64
			if st.listener != nil {
				fences = st.listener.sent.Load()
			}
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i = (i + 7919) % n
					if _, err := st.ByHash(ctx, hashes[i]); err != nil {
						b.Errorf("ByHash: %v", err)
						return
					}
				}
			})
			if st.listener != nil {
				b.ReportMetric(float64(st.listener.sent.Load()-fences)/float64(b.N), "fences/op")
			}
		})
	}
}

// benchHash is the token hash of the i-th bulk-loaded session: SHA-256 of
// i as 8 big-endian bytes, which is what int8send gives in SQL.
func benchHash(i int) session.Hash {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(b[:])
}

// bulkLoad inserts n live sessions (ten per user) in one statement,
// bypassing the Store, analyses the table, and returns their token hashes.
func bulkLoad(b testing.TB, st *Store, n int) []session.Hash {
	b.Helper()
	if _, err := st.pool.Exec(ctx, `INSERT INTO sessiond_sessions (`+columns+`)
		SELECT 'sess-' || i, sha256(int8send(i)), NULL, 'user-' || (i / 10), '{user}',
			now() - interval '1 second' * ($1 - i), now(), now(), now(),
			now() + interval '1 day', now() + interval '30 days',
			false, '192.0.2.1', 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
			'192.0.2.1', 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
			'{"cart":[1,2,3]}', 1, '{pwd}'
		FROM generate_series(0, $1 - 1) i`, n); err != nil {
		b.Fatal(err)
	}
	if _, err := st.pool.Exec(ctx, "VACUUM ANALYZE sessiond_sessions"); err != nil {
		b.Fatal(err)
	}
	hashes := make([]session.Hash, n)
	for i := range hashes {
		hashes[i] = benchHash(i)
	}
	if _, err := st.ByHash(ctx, hashes[n-1]); err != nil {
		b.Fatalf("ByHash of the last loaded session: %v (benchHash disagrees with the SQL)", err)
	}
	return hashes
}
