package app_test

import (
	"strings"
	"testing"

	"github.com/sessiond/sessiond/app"
)

// TestRedactURL: no password of a store location survives redaction, in
// any of the forms the stores accept; the rest is kept.
func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://alice:s3cret@db:5432/app?sslmode=require":             "postgres://alice:xxxxx@db:5432/app?sslmode=require",
		"redis://:s3cret@127.0.0.1:6379/0":                                "redis://:xxxxx@127.0.0.1:6379/0",
		"rediss://user:s3cret@cache:6380":                                 "rediss://user:xxxxx@cache:6380",
		"redis+sentinel://:s3cret@h1:26379,h2:26379/mymaster":             "redis+sentinel://:xxxxx@h1:26379,h2:26379/mymaster",
		"redis+sentinel://h1:26379/mymaster?sentinel_password=s3cret&x=1": "redis+sentinel://h1:26379/mymaster?sentinel_password=xxxxx&x=1",
		"postgres://db/app?password=s3cret":                               "postgres://db/app?password=xxxxx",
		"host=db user=alice password=s3cret dbname=app":                   "host=db user=alice password=xxxxx dbname=app",
		"host=db password='s3 cret' dbname=app":                           "host=db password=xxxxx dbname=app",
		"sqlite:sessiond-data/sessiond.db":                                "sqlite:sessiond-data/sessiond.db",
		"postgres://alice@db/app":                                         "postgres://alice@db/app",
	} {
		got := app.RedactURL(in)
		if got != want {
			t.Errorf("RedactURL(%q)\n got %q\nwant %q", in, got, want)
		}
		if strings.Contains(got, "s3cret") || strings.Contains(got, "s3 cret") {
			t.Errorf("RedactURL(%q) keeps the password: %q", in, got)
		}
	}
}

// TestOpenStoresErrorsNameNoPassword: a store that cannot be reached, or
// a location that cannot be parsed, is reported without its password.
func TestOpenStoresErrorsNameNoPassword(t *testing.T) {
	for _, u := range []string{
		"postgres://alice:s3cret@127.0.0.1:1/app?connect_timeout=1",
		"redis://:s3cret@127.0.0.1:1/0",
		"mysql://alice:s3cret@db/app",
	} {
		users := ""
		if strings.HasPrefix(u, "redis") {
			users = "sqlite:" + t.TempDir() + "/u.db"
		}
		s, err := app.OpenStores(t.Context(), u, users)
		if err == nil {
			s.Close()
			t.Fatalf("OpenStores(%q) succeeded", u)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("OpenStores(%q): the error shows the password: %v", u, err)
		}
	}
}

// TestDatabaseURL: the accounts open the session store's database without
// the store's own parameters, which PostgreSQL would refuse; every other
// parameter, and every other kind of URL, is kept.
func TestDatabaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:pw@db:5432/sessiond?cache=off&sslmode=require&cache_bytes=8MiB&cache_entries=10": "postgres://u:pw@db:5432/sessiond?sslmode=require",
		"postgres://db/sessiond?cache=on":      "postgres://db/sessiond",
		"postgres://db/sessiond?search_path=x": "postgres://db/sessiond?search_path=x",
		"sqlite:sessiond-data/sessiond.db":     "sqlite:sessiond-data/sessiond.db",
		"redis://127.0.0.1:6379/0?cache=off":   "redis://127.0.0.1:6379/0?cache=off",
	} {
		if got := app.DatabaseURL(in); got != want {
			t.Errorf("DatabaseURL(%q) = %q, want %q", in, got, want)
		}
	}
}
