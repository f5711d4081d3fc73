package pgstore

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/session/storetest"
)

var ctx = context.Background()

// openAt opens a Store on the database at url and closes it when the test
// ends.
func openAt(t testing.TB, url string) *Store {
	t.Helper()
	st, err := Open(ctx, url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(st.Close)
	return st
}

// openTemp opens a Store on a schema of the test's own.
func openTemp(t testing.TB) *Store {
	t.Helper()
	return openAt(t, testenv.PostgresSchema(t))
}

// rawPool connects to the database at url, bypassing the Store, for tests
// to look at or tamper with the tables, and closes the pool when the test
// ends.
func rawPool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestStore runs the conformance suite with the cache on (the default)
// and off.
func TestStore(t *testing.T) {
	testenv.Postgres(t) // skip (or fail under CI) once, not in every subtest
	for _, cache := range []string{"on", "off"} {
		t.Run("cache="+cache, func(t *testing.T) {
			storetest.Run(t, storetest.Harness{
				New: func(t *testing.T) session.Store {
					return openAt(t, withParam(t, testenv.PostgresSchema(t), "cache", cache))
				},
				Raw: func(t *testing.T, st session.Store) []byte { return dump(t, st.(*Store).pool) },
				Shared: func(t *testing.T, st session.Store) session.Store {
					return openAt(t, st.(*Store).pool.Config().ConnString())
				},
			})
		})
	}
}

// dump returns everything the tables of the connection's schema hold:
// each row as text, and the bytes of each bytea value as they are (the
// text form of bytea is hex, in which a raw token would not show).
func dump(t testing.TB, pool *pgxpool.Pool) []byte {
	t.Helper()
	rows, err := pool.Query(ctx, `SELECT table_name, column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	byteaCols := map[string][]string{}
	var tables []string
	for rows.Next() {
		var table, col, typ string
		if err := rows.Scan(&table, &col, &typ); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(tables, table) {
			tables = append(tables, table)
		}
		if typ == "bytea" {
			byteaCols[table] = append(byteaCols[table], col)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, table := range tables {
		q := "SELECT t::text FROM " + pgx.Identifier{table}.Sanitize() + " t"
		for _, col := range byteaCols[table] {
			q = strings.Replace(q, " FROM ", ", "+pgx.Identifier{col}.Sanitize()+" FROM ", 1)
		}
		rows, err := pool.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				switch v := v.(type) {
				case string:
					out.WriteString(v)
				case []byte:
					out.Write(v)
				}
				out.WriteByte('\n')
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}

// TestConcurrentMigrations opens Stores on a new schema from several
// goroutines at once: the schema must be created exactly once, without
// errors.
func TestConcurrentMigrations(t *testing.T) {
	url := testenv.PostgresSchema(t)
	const n = 4
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = Open(ctx, url) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
			continue
		}
		t.Cleanup(stores[i].Close)
	}
	if t.Failed() {
		return
	}
	s := storetest.NewSession(storetest.NewID())
	storetest.MustCreate(t, stores[0], s)
	if _, err := stores[n-1].ByID(ctx, s.ID); err != nil {
		t.Errorf("ByID through another Store: %v", err)
	}
	var versions []int
	rows, _ := rawPool(t, url).Query(ctx, "SELECT version FROM sessiond_schema_migrations WHERE component = $1 ORDER BY version", component)
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for v := range migrations {
		want = append(want, v+1)
	}
	if !slices.Equal(versions, want) {
		t.Errorf("recorded migrations: got %v, want %v", versions, want)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	url := testenv.PostgresSchema(t)
	openAt(t, url)
	if _, err := rawPool(t, url).Exec(ctx, "INSERT INTO sessiond_schema_migrations (component, version) VALUES ($1, 99)", component); err != nil {
		t.Fatal(err)
	}
	if st, err := Open(ctx, url); err == nil {
		st.Close()
		t.Fatal("Open of a database with a newer schema succeeded, want an error")
	}
}

// TestTimes checks that times keep their microseconds, that the zero time
// survives, and that times far from now keep their order relative to it.
func TestTimes(t *testing.T) {
	st := openTemp(t)
	s := storetest.NewSession(storetest.NewID())
	s.CreatedAt = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	s.AuthenticatedAt = time.Time{}
	s.RotatedAt = time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)
	s.AbsoluteDeadline = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	storetest.MustCreate(t, st, s)
	got, err := st.ByID(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := s.CreatedAt.Truncate(time.Microsecond); !got.CreatedAt.Equal(want) {
		t.Errorf("CreatedAt: got %v, want %v", got.CreatedAt, want)
	}
	if !got.AuthenticatedAt.IsZero() {
		t.Errorf("zero AuthenticatedAt came back as %v", got.AuthenticatedAt)
	}
	if !got.RotatedAt.Equal(s.RotatedAt) || !got.AbsoluteDeadline.Equal(s.AbsoluteDeadline) {
		t.Errorf("far times: got rotated %v, absolute deadline %v; want %v, %v", got.RotatedAt, got.AbsoluteDeadline, s.RotatedAt, s.AbsoluteDeadline)
	}
}

// TestCorruptRow damages stored rows behind the Store's back and checks
// that reading them fails with ErrInvalidRecord, not a panic, a bogus
// session or a server error.
func TestCorruptRow(t *testing.T) {
	url := testenv.PostgresSchema(t)
	st := openAt(t, url)
	db := rawPool(t, url)
	// Infinite times pass the schema; for the rest, damage drops the
	// constraints that would refuse it.
	if _, err := db.Exec(ctx, `DO $$ DECLARE c record; BEGIN
		FOR c IN SELECT conname FROM pg_constraint WHERE conrelid = 'sessiond_sessions'::regclass AND contype = 'c' LOOP
			EXECUTE format('ALTER TABLE sessiond_sessions DROP CONSTRAINT %I', c.conname);
		END LOOP;
		ALTER TABLE sessiond_sessions ALTER COLUMN roles DROP NOT NULL, ALTER COLUMN created_ip DROP NOT NULL,
			ALTER COLUMN last_seen_at DROP NOT NULL, ALTER COLUMN remember DROP NOT NULL,
			ALTER COLUMN version DROP NOT NULL, ALTER COLUMN user_id DROP NOT NULL;
	END $$`); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		damage string // SQL with $1 = the session's ID
	}{
		{"roles hold a NULL", `UPDATE sessiond_sessions SET roles = ARRAY['admin', NULL] WHERE id = $1`},
		{"roles two-dimensional", `UPDATE sessiond_sessions SET roles = ARRAY[['a', 'b'], ['c', 'd']] WHERE id = $1`},
		{"roles NULL", `UPDATE sessiond_sessions SET roles = NULL WHERE id = $1`},
		{"short token hash", `UPDATE sessiond_sessions SET token_hash = '\x0102' WHERE id = $1`},
		{"empty token hash", `UPDATE sessiond_sessions SET token_hash = '' WHERE id = $1`},
		{"long previous hash", `UPDATE sessiond_sessions SET prev_token_hash = decode(repeat('00', 33), 'hex') WHERE id = $1`},
		{"created IP NULL", `UPDATE sessiond_sessions SET created_ip = NULL WHERE id = $1`},
		{"last seen NULL", `UPDATE sessiond_sessions SET last_seen_at = NULL WHERE id = $1`},
		{"created at -infinity", `UPDATE sessiond_sessions SET created_at = '-infinity' WHERE id = $1`},
		{"deadline infinity", `UPDATE sessiond_sessions SET idle_deadline = 'infinity', absolute_deadline = 'infinity' WHERE id = $1`},
		{"remember NULL", `UPDATE sessiond_sessions SET remember = NULL WHERE id = $1`},
		{"version NULL", `UPDATE sessiond_sessions SET version = NULL WHERE id = $1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := storetest.NewSession(storetest.NewID())
			storetest.MustCreate(t, st, s)
			if _, err := db.Exec(ctx, tt.damage, s.ID); err != nil {
				t.Fatalf("damaging the row: %v", err)
			}
			storetest.CheckDamaged(t, st, s)
		})
	}

	t.Run("swept", func(t *testing.T) {
		user := storetest.NewID()
		var expired []*session.Session
		for range 3 {
			s := storetest.NewSession(user)
			s.AbsoluteDeadline = time.Now().Add(-time.Minute)
			storetest.MustCreate(t, st, s)
			expired = append(expired, s)
		}
		damaged := expired[1]
		if _, err := db.Exec(ctx, `UPDATE sessiond_sessions SET roles = ARRAY[NULL]::text[] WHERE id = $1`, damaged.ID); err != nil {
			t.Fatal(err)
		}
		gone, err := st.DeleteExpired(ctx, time.Now(), 100)
		if !errors.Is(err, session.ErrInvalidRecord) {
			t.Errorf("DeleteExpired: got %v, want an error wrapping ErrInvalidRecord", err)
		}
		var ids []string
		for _, g := range gone {
			ids = append(ids, g.ID)
			if g.ID == damaged.ID && g.UserID != user {
				t.Errorf("the damaged session came back with user %q, want %q", g.UserID, user)
			}
		}
		for _, s := range expired {
			if !slices.Contains(ids, s.ID) {
				t.Errorf("DeleteExpired returned %q, which lacks %s: a damaged row must not stop the sweep", ids, s.ID)
			}
			if err := st.Delete(ctx, s.ID); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("swept session %s is still stored: Delete gave %v", s.ID, err)
			}
		}
	})
}

// TestConcurrentSweepers runs sweepers on several Stores at once over one
// backlog of expired sessions: every expired session must be deleted and
// reported exactly once, and no live one touched.
func TestConcurrentSweepers(t *testing.T) {
	url := testenv.PostgresSchema(t)
	stores := []*Store{openAt(t, url), openAt(t, url), openAt(t, url)}
	db := rawPool(t, url)
	const expired, live = 600, 50
	// Insert the backlog in one statement, bypassing the Store.
	if _, err := db.Exec(ctx, `INSERT INTO sessiond_sessions (`+columns+`)
		SELECT 'exp-' || i, sha256(('exp-' || i)::bytea), NULL, 'u-' || (i % 7), '{}',
			now(), now(), now(), now(), now() - interval '1 second' * i, now() + interval '1 hour',
			false, '', '', '', '', NULL, 1, '{}'
		FROM generate_series(1, $1) i`, expired); err != nil {
		t.Fatal(err)
	}
	for range live {
		storetest.MustCreate(t, stores[0], storetest.NewSession(storetest.NewID()))
	}
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
	)
	for _, st := range stores {
		for range 2 {
			wg.Go(func() {
				for {
					gone, err := st.DeleteExpired(ctx, time.Now(), 25)
					if err != nil {
						t.Errorf("DeleteExpired: %v", err)
						return
					}
					mu.Lock()
					for _, s := range gone {
						seen[s.ID]++
					}
					mu.Unlock()
					if len(gone) == 0 {
						return
					}
				}
			})
		}
	}
	wg.Wait()
	if len(seen) != expired {
		t.Errorf("sweepers reported %d distinct sessions, want %d", len(seen), expired)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("session %s reported %d times", id, n)
		}
		if !strings.HasPrefix(id, "exp-") {
			t.Errorf("a live session was swept: %s", id)
		}
	}
	var left int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM sessiond_sessions").Scan(&left); err != nil || left != live {
		t.Errorf("after the sweep %d sessions remain (%v), want the %d live ones", left, err, live)
	}
}

// TestSweepUsesEarlierClock checks that a sweeper whose clock is ahead of
// the database's deletes nothing the database still counts live.
func TestSweepUsesEarlierClock(t *testing.T) {
	st := openTemp(t)
	s := storetest.NewSession(storetest.NewID())
	s.IdleDeadline = time.Now().Add(time.Minute)
	storetest.MustCreate(t, st, s)
	gone, err := st.DeleteExpired(ctx, time.Now().Add(time.Hour), 100)
	if err != nil || len(gone) != 0 {
		t.Errorf("DeleteExpired an hour ahead: got %d sessions, %v; want none", len(gone), err)
	}
	if _, err := st.ByID(ctx, s.ID); err != nil {
		t.Errorf("ByID after the sweep: %v", err)
	}
	if gone, err := st.DeleteExpired(ctx, time.Now(), 0); err != nil || len(gone) != 0 {
		t.Errorf("DeleteExpired with limit 0: got %d sessions, %v; want none", len(gone), err)
	}
}
