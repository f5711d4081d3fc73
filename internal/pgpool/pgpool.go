// Package pgpool opens the PostgreSQL connection pools of sessiond's
// components (store/pgstore, users/pgusers, assertion), which may share one database,
// with the same settings: durable commits on every connection, and the
// component's schema brought up to date by internal/pgmigrate.
//
// Errors from this package do not name the caller's package: the caller
// wraps them with its own prefix ("pgstore: %w").
package pgpool

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessiond/sessiond/internal/pgmigrate"
)

// Open connects to the PostgreSQL database at url and applies component's
// migrations (see pgmigrate.Apply). url is a postgres:// URL or a list of
// key=value pairs, as libpq and pgx take them; pgx's pool_* parameters set
// the connection pool (by default at most max(4, number of CPUs)
// connections), and any other parameter PostgreSQL knows, search_path for
// instance, is set on every connection. Unless url sets
// synchronous_commit, connections of a server configured with
// synchronous_commit=off turn it on (see durableCommits). A connection
// attempt gives up after connectTimeout unless url sets connect_timeout.
// Close the pool when done.
func Open(ctx context.Context, url, component string, migrations []string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	return OpenConfig(ctx, cfg, component, migrations)
}

// OpenConfig is Open for a configuration parsed by pgxpool.ParseConfig,
// for a caller that takes parameters of its own out of the URL first.
func OpenConfig(ctx context.Context, cfg *pgxpool.Config, component string, migrations []string) (*pgxpool.Pool, error) {
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	if _, set := cfg.ConnConfig.RuntimeParams["synchronous_commit"]; !set {
		cfg.AfterConnect = durableCommits
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pgmigrate.Apply(ctx, pool, component, migrations); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// durableCommits turns synchronous_commit on for conn if the server has it
// off, under which a commit PostgreSQL acknowledged can be lost if the
// server crashes. Stronger settings (remote_write, remote_apply) and
// "local" are left as they are.
// connectTimeout bounds a connection attempt whose URL sets none. The pool
// keeps making a connection it began after the request that asked for it
// gave up, so without a bound, a server that accepts connections and never
// answers (one starting up after a crash, a black-holed network) could
// hold every slot of the pool, and the pool would not recover when the
// server does.
const connectTimeout = 5 * time.Second

func durableCommits(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `SELECT set_config('synchronous_commit', 'on', false)
		WHERE current_setting('synchronous_commit') = 'off'`)
	if err != nil {
		return fmt.Errorf("check synchronous_commit: %w", err)
	}
	return nil
}
