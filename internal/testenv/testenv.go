// Package testenv gives tests the external services they run against.
// Tests that need a service they cannot reach skip, with a message that
// says how to provide it, except under CI (the environment variable CI is
// set), where a missing service is a failure: CI must never pass by running
// nothing.
package testenv

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresEnv names the environment variable with the PostgreSQL URL that
// tests use; DefaultPostgres is used when it is empty.
const (
	PostgresEnv     = "SESSIOND_TEST_POSTGRES"
	DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

var (
	pgOnce sync.Once
	pgURL  string
	pgErr  error
)

// Postgres returns the URL of the test PostgreSQL database, after checking
// once per process that it answers. If it does not, Postgres fails the test
// when the environment variable CI is set and skips it otherwise.
func Postgres(t testing.TB) string {
	t.Helper()
	pgOnce.Do(func() {
		pgURL = os.Getenv(PostgresEnv)
		if pgURL == "" {
			pgURL = DefaultPostgres
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pgURL)
		if err != nil {
			pgErr = err
			return
		}
		defer conn.Close(ctx)
		pgErr = conn.Ping(ctx)
	})
	if pgErr != nil {
		msg := fmt.Sprintf("PostgreSQL is unreachable (%v): start it or set %s to a reachable database URL (default %s)", pgErr, PostgresEnv, DefaultPostgres)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return pgURL
}

// PostgresSchema creates a schema of its own for the test in the test
// database and returns a URL whose connections use it (their search_path
// is that schema alone), so that tests running in parallel, in one package
// or in several, never see each other's tables. The schema is dropped, with
// everything in it, when the test ends: close what uses it in a Cleanup
// registered after PostgresSchema returns, so that it runs first.
func PostgresSchema(t testing.TB) string {
	t.Helper()
	base := Postgres(t)
	schema := "t_" + strings.ToLower(rand.Text())
	exec(t, base, "CREATE SCHEMA "+schema)
	t.Cleanup(func() { exec(t, base, "DROP SCHEMA "+schema+" CASCADE") })
	u, err := WithParam(base, "search_path", schema)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// exec runs one statement on a connection of its own.
func exec(t testing.TB, connString, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// WithParam returns the connection string s (a postgres:// URL or a list of
// key=value pairs) with the parameter key set to value. pgx sends
// parameters it does not know itself, such as search_path, to the server
// as settings for the session.
func WithParam(s, key, value string) (string, error) {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("testenv: %s: %w", PostgresEnv, err)
		}
		q := u.Query()
		q.Set(key, value)
		// pgx unescapes the query as a path, which leaves '+' a '+'.
		u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
		return u.String(), nil
	}
	return s + " " + key + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(value) + "'", nil
}
