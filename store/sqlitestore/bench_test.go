package sqlitestore

import (
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiond/sessiond/session"
)

// BenchmarkByHash looks up random live sessions by token hash, the work
// of validating one request, in stores of different sizes: from the
// database (cache=off) and through the in-memory cache (cache=on), which
// holds them all at 1k and a tenth of them at 1M.
func BenchmarkByHash(b *testing.B) {
	for _, n := range []int{1000, 1_000_000} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "sessions.db")
			start := time.Now()
			hashes := bulkLoad(b, path, n)
			b.Logf("loaded %d sessions in %v", n, time.Since(start).Round(time.Millisecond))

			for _, cached := range []bool{false, true} {
				b.Run(map[bool]string{false: "cache=off", true: "cache=on"}[cached], func(b *testing.B) {
					st := openAt(b, path)
					if !cached {
						st.cache.close()
						st.cache = nil
					}
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
		})
	}
}

// benchHash is the token hash of the i-th bulk-loaded session.
func benchHash(i int) session.Hash {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(b[:])
}

// bulkLoad creates the schema in a new file at path and inserts n live
// sessions (ten per user), bypassing the Store, and returns their token
// hashes. The table's key is derived from the hash, so the rows arrive in
// random key order, as sessions created over time do.
func bulkLoad(b testing.TB, path string, n int) []session.Hash {
	b.Helper()
	st, err := Open(path) // creates the schema
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}

	db, err := sql.Open("sqlite", path+"?_pragma=synchronous(OFF)&_pragma=cache_size(-524288)&_pragma=temp_store(MEMORY)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	// The rows go first into a plain temporary table, in one transaction,
	// and then into sessions with one INSERT ... SELECT that is its own
	// transaction. Inserting them into sessions directly, 500 at a time in
	// one transaction, takes about three times as long: each INSERT copies
	// every page it changes that an earlier one left dirty into a
	// statement journal (to undo itself alone if it fails), and with the
	// rows in random key order that is nearly every page it changes. A
	// statement that is a whole transaction needs no such journal.
	if _, err := db.Exec("CREATE TEMP TABLE staging AS SELECT hash_key, " + columns + " FROM sessions WHERE 0"); err != nil {
		b.Fatal(err)
	}
	const perInsert = 500 // rows per INSERT: 19 parameters each, well under SQLite's limit of 32766

	cols := strings.Count(columns, ",") + 2 // hash_key, then columns
	row := "(" + strings.Repeat("?,", cols-1) + "?)"
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	insert := func(rows int) *sql.Stmt {
		stmt, err := tx.Prepare("INSERT INTO staging VALUES " + strings.Repeat(row+",", rows-1) + row)
		if err != nil {
			b.Fatal(err)
		}
		return stmt
	}
	full := insert(min(perInsert, n))
	now := time.Now()
	idle, abs := encodeTime(now.Add(24*time.Hour)), encodeTime(now.Add(30*24*time.Hour))
	hashes := make([]session.Hash, n)
	args := make([]any, 0, perInsert*cols)
	for first := 0; first < n; first += perInsert {
		args = args[:0]
		last := min(first+perInsert, n)
		for i := first; i < last; i++ {
			hashes[i] = benchHash(i)
			created := encodeTime(now.Add(-time.Duration(n-i) * time.Second))
			args = append(args, hashKey(hashes[i]),
				fmt.Sprintf("sess-%09d", i), hashes[i][:], nil, fmt.Sprintf("user-%07d", i/10), `["user"]`,
				created, created, created, created, idle, abs,
				0, "192.0.2.1", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
				"192.0.2.1", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
				[]byte(`{"cart":[1,2,3]}`), 1)
		}
		stmt := full
		if last-first < perInsert {
			stmt = insert(last - first)
		}
		if _, err := stmt.Exec(args...); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	// In the order of i, which is random in hash_key.
	if _, err := db.Exec("INSERT INTO sessions (hash_key, " + columns + ") SELECT * FROM staging ORDER BY rowid"); err != nil {
		b.Fatal(err)
	}
	// Fold the write-ahead log into the database, as a long-running
	// server's checkpoints would have.
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		b.Fatal(err)
	}
	return hashes
}

// BenchmarkTouch writes idle-deadline extensions from 64 goroutines at
// once, as a server under load does when its sessions come due for one,
// to random sessions out of 10,000. Each Touch waits for its fsync'd
// commit; touches that arrive together share one.
func BenchmarkTouch(b *testing.B) {
	const n = 10_000
	path := filepath.Join(b.TempDir(), "sessions.db")
	bulkLoad(b, path, n)
	st := openAt(b, path)
	b.SetParallelism(32) // 64 goroutines on 2 CPUs
	var seq atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(7919) % n
			t := session.TouchInfo{At: time.Now(), IP: "192.0.2.2", UserAgent: "bench", IdleDeadline: time.Now().Add(time.Hour)}
			if err := st.Touch(ctx, fmt.Sprintf("sess-%09d", i), t); err != nil {
				b.Fatalf("Touch: %v", err)
			}
		}
	})
}
