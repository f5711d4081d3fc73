package pgstore

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/testenv"
)

var param = regexp.MustCompile(`\$(\d+)`)

// sortsUser names the statements that may sort what they find: one user's
// sessions.
var sortsUser = map[string]bool{"ListByUser": true, "Live": true}

// TestQueryPlans checks the plan of every statement on a table of 20,000
// sessions (ten each for 2,000 users; a tenth of them expired), both the plan
// PostgreSQL makes for given values and the generic plan it may switch to
// for a statement prepared and run many times: none scans the whole
// table, and each uses the index it was written for. Only the lookups by
// user may sort, what they find: one user's few sessions (PostgreSQL often
// prefers a bitmap scan of the index and a sort of its rows to reading the
// index in order).
func TestQueryPlans(t *testing.T) {
	url := testenv.PostgresSchema(t)
	openAt(t, url)
	db := rawPool(t, url)
	if _, err := db.Exec(ctx, `INSERT INTO sessiond_sessions (`+columns+`)
		SELECT 's-' || i, sha256(('t-' || i)::bytea), CASE WHEN i % 50 = 0 THEN sha256(('p-' || i)::bytea) END,
			'u-' || (i % 2000), '{user}',
			now() - interval '1 second' * i, now(), now(), now(),
			now() + interval '1 second' * (i - 2000), now() + interval '1 day',
			false, '192.0.2.1', 'Mozilla/5.0', '192.0.2.1', 'Mozilla/5.0', '{"cart":[1,2,3]}', 1, '{pwd}'
		FROM generate_series(1, 20000) i`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "ANALYZE sessiond_sessions"); err != nil {
		t.Fatal(err)
	}
	var hash []byte
	if err := db.QueryRow(ctx, "SELECT token_hash FROM sessiond_sessions WHERE id = 's-5000'").Scan(&hash); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	const (
		byHash   = "Index Scan using sessiond_sessions_token_hash_key"
		byPrev   = "Index Scan using sessiond_sessions_prev_token_hash"
		byID     = "Index Scan using sessiond_sessions_pkey"
		byExpiry = "Index Scan using sessiond_sessions_expires_at"
	)
	tests := []struct {
		name, sql string
		args      []any // values for the custom plan
		want      []string
	}{
		{"ByHash", sqlByHash, []any{hash}, []string{"Limit", "Append", byHash, byPrev}},
		{"ByID", sqlByID, []any{"s-5000"}, []string{byID}},
		{"ListByUser", sqlListByUser, []any{"u-5"}, []string{"sessiond_sessions_user_id"}},
		{"Exists", sqlExists, []any{"s-5000"}, []string{byID}},
		{"Live", sqlLive, []any{"u-5"}, []string{"sessiond_sessions_user_id"}},
		{"Insert", sqlInsert, []any{"s-x", hash, nil, "u-5", []string{}, now, now, now, now, now, now, false, "", "", "", "", nil, 1, []string{}}, nil},
		{"Update", sqlUpdate, []any{"s-5000", 1, hash, nil, "u-5", []string{}, now, now, now, now, "", "", now, now, false, "", "", nil, []string{}}, []string{byID}},
		{"Touch", sqlTouch, []any{"s-5000", now, "", "", now}, []string{byID}},
		{"Delete", sqlDeleteID, []any{"s-5000"}, []string{byID}},
		{"DeleteIDs", sqlDeleteIDs, []any{[]string{"s-1", "s-2"}}, []string{byID}},
		{"DeleteByUser", sqlDeleteByUser, []any{"u-5", "s-5"}, []string{"sessiond_sessions_user_id"}},
		{"DeleteExpired", sqlDeleteExpired, []any{now, 100}, []string{"LockRows", byExpiry, byID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(kind string, plan string) {
				t.Helper()
				for _, bad := range []string{"Seq Scan", "Sort"} {
					if strings.Contains(plan, bad) && !(bad == "Sort" && sortsUser[tt.name]) {
						t.Errorf("%s plan has a %s:\n%s", kind, bad, plan)
					}
				}
				for _, w := range tt.want {
					if !strings.Contains(plan, w) {
						t.Errorf("%s plan lacks %q:\n%s", kind, w, plan)
					}
				}
			}
			check("custom", explain(t, db, "EXPLAIN "+tt.sql, tt.args...))

			// The generic plan, of a statement prepared in SQL, which
			// knows nothing of the values. EXECUTE's NULLs take the
			// parameters' inferred types.
			conn, err := db.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Release()
			n := 0
			for _, m := range param.FindAllStringSubmatch(tt.sql, -1) {
				var i int
				fmt.Sscan(m[1], &i)
				n = max(n, i)
			}
			if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "PREPARE p AS "+tt.sql); err != nil {
				t.Fatal(err)
			}
			defer conn.Exec(ctx, "DEALLOCATE p; RESET plan_cache_mode")
			nulls := strings.TrimSuffix(strings.Repeat("NULL, ", n), ", ")
			check("generic", explain(t, conn, "EXPLAIN EXECUTE p("+nulls+")"))
		})
	}
}

// explain returns the plan of sql as text, one node a line.
func explain(t *testing.T, q querier, sql string, args ...any) string {
	t.Helper()
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}
