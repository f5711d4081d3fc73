package pgmigrate

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessiond/sessiond/internal/testenv"
)

var ctx = context.Background()

// newPool returns a pool on a schema of the test's own.
func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(ctx, testenv.PostgresSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// versions returns the versions recorded for component.
func versions(t *testing.T, pool *pgxpool.Pool, component string) []int {
	t.Helper()
	rows, _ := pool.Query(ctx, "SELECT version FROM sessiond_schema_migrations WHERE component = $1 ORDER BY version", component)
	v, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// tables returns the tables in the pool's schema.
func tables(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, _ := pool.Query(ctx, "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name")
	v, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestApply(t *testing.T) {
	pool := newPool(t)
	v1 := []string{"CREATE TABLE a (x int)"}
	if err := Apply(ctx, pool, "one", v1); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := Apply(ctx, pool, "one", v1); err != nil {
		t.Fatalf("Apply again (nothing to do): %v", err)
	}
	// A later program appends a migration: only that one runs.
	v2 := append(slices.Clone(v1), "CREATE TABLE b (x int)")
	if err := Apply(ctx, pool, "one", v2); err != nil {
		t.Fatalf("Apply of the next version: %v", err)
	}
	// Another component keeps its own versions in the same table.
	if err := Apply(ctx, pool, "two", []string{"CREATE TABLE c (x int)"}); err != nil {
		t.Fatalf("Apply of another component: %v", err)
	}
	if got, want := versions(t, pool, "one"), []int{1, 2}; !slices.Equal(got, want) {
		t.Errorf("versions of one: got %v, want %v", got, want)
	}
	if got, want := versions(t, pool, "two"), []int{1}; !slices.Equal(got, want) {
		t.Errorf("versions of two: got %v, want %v", got, want)
	}
	if got, want := tables(t, pool), []string{"a", "b", "c", "sessiond_schema_migrations"}; !slices.Equal(got, want) {
		t.Errorf("tables: got %q, want %q", got, want)
	}

	// The older program refuses the schema the newer one left.
	err := Apply(ctx, pool, "one", v1)
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Apply of an older list: got %v, want an error saying the schema is newer", err)
	}
}

// TestApplyAllOrNothing checks that a failing migration leaves the schema
// as it was: the migrations before it in the same Apply are undone too.
func TestApplyAllOrNothing(t *testing.T) {
	pool := newPool(t)
	err := Apply(ctx, pool, "one", []string{"CREATE TABLE a (x int)", "CREATE TABLE a (x int)"})
	if err == nil || !strings.Contains(err.Error(), "migrate schema to version 2") {
		t.Fatalf("Apply with a failing second migration: got %v, want an error naming version 2", err)
	}
	if got := tables(t, pool); len(got) != 0 {
		t.Errorf("after the failed Apply the schema holds %q, want nothing", got)
	}
}

// TestApplyConcurrent runs Apply for two components from several
// goroutines at once on a new schema: each migration must run exactly
// once (a second CREATE TABLE would fail), without errors.
func TestApplyConcurrent(t *testing.T) {
	pool := newPool(t)
	const n = 4
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for range n {
		wg.Go(func() { errs <- Apply(ctx, pool, "one", []string{"CREATE TABLE a (x int)"}) })
		wg.Go(func() { errs <- Apply(ctx, pool, "two", []string{"CREATE TABLE b (x int)", "CREATE TABLE c (x int)"}) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Apply: %v", err)
		}
	}
	if got, want := versions(t, pool, "two"), []int{1, 2}; !slices.Equal(got, want) {
		t.Errorf("versions of two: got %v, want %v", got, want)
	}
}
