package pgpool

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessiond/sessiond/internal/testenv"
)

var ctx = context.Background()

var migrations = []string{`CREATE TABLE pgpool_items (k text PRIMARY KEY)`}

// openAt opens a pool on url with migrations and closes it when the test
// ends.
func openAt(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := Open(ctx, url, "pgpool-test", migrations)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestMigrates checks that Open applies the component's migrations, once
// however often it opens.
func TestMigrates(t *testing.T) {
	url := testenv.PostgresSchema(t)
	openAt(t, url)
	pool := openAt(t, url)
	if _, err := pool.Exec(ctx, "INSERT INTO pgpool_items VALUES ('a')"); err != nil {
		t.Fatalf("the migration's table: %v", err)
	}
	rows, _ := pool.Query(ctx, "SELECT version FROM sessiond_schema_migrations WHERE component = 'pgpool-test'")
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(versions, []int32{1}) {
		t.Errorf("recorded versions: got %v, want [1]", versions)
	}
}

func TestOpenErrors(t *testing.T) {
	if pool, err := Open(ctx, "postgres://[::1", "c", nil); err == nil {
		pool.Close()
		t.Error("Open of a malformed URL succeeded")
	}
	url := testenv.PostgresSchema(t)
	if pool, err := Open(ctx, url, "c", []string{"CREATE TABLE broken ("}); err == nil {
		pool.Close()
		t.Error("Open with a failing migration succeeded")
	}
}

// TestSynchronousCommit checks that the pool's connections commit durably
// when the server's setting (here: the connection's startup options, as a
// server setting would look) is off, and that an explicit
// synchronous_commit in the URL is left alone.
func TestSynchronousCommit(t *testing.T) {
	base := testenv.PostgresSchema(t)
	offByServer, err := testenv.WithParam(base, "options", "-c synchronous_commit=off")
	if err != nil {
		t.Fatal(err)
	}
	explicit, err := testenv.WithParam(base, "synchronous_commit", "remote_write")
	if err != nil {
		t.Fatal(err)
	}
	for url, want := range map[string]string{base: "on", offByServer: "on", explicit: "remote_write"} {
		pool := openAt(t, url)
		var got string
		if err := pool.QueryRow(ctx, "SHOW synchronous_commit").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("synchronous_commit with %q: got %s, want %s", url, got, want)
		}
	}
}
