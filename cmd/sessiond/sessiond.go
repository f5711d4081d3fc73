package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/memstore"
	"github.com/sessiond/sessiond/store/pgstore"
	"github.com/sessiond/sessiond/store/redisstore"
	"github.com/sessiond/sessiond/store/sqlitestore"
	"github.com/sessiond/sessiond/users"
	"github.com/sessiond/sessiond/users/pgusers"
	"github.com/sessiond/sessiond/users/sqliteusers"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `sessiond: secure session management.

Usage:
  sessiond serve [flags]                   run the service
  sessiond users add NAME [--roles a,b]    create a user (password from SESSIOND_PASSWORD or stdin, else generated)
  sessiond users passwd NAME               set a password (as above); ends the user's sessions
  sessiond users roles NAME a,b            set roles; ends the user's sessions
  sessiond users disable|enable NAME       disable (ending the user's sessions) or enable a user
  sessiond users list
  sessiond sessions list NAME              a user's sessions
  sessiond sessions revoke ID | --user NAME
  sessiond version

Every command takes the flags of serve (--store, --users, ...); run
"sessiond serve -h" for them.
`

// Main runs sessiond with args (without the program name) and returns the
// exit code. It serves until ctx is done.
func Main(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = serve(ctx, rest, getenv, stdout, stderr)
	case "users", "sessions":
		err = admin(ctx, cmd, rest, getenv, stdin, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "sessiond", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "sessiond: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "sessiond:", err)
		return 1
	}
	return 0
}

// app is what serve and the admin commands build from the options.
type app struct {
	opts     *options
	store    session.Store
	accounts *users.Accounts
	audit    auditLog
	srv      *server.Server
	log      *slog.Logger
	close    func()
}

// auditLog is what sessiond needs of the audit log: events to append and
// query, and old ones to delete (--audit-retention).
type auditLog interface {
	audit.Log
	audit.Pruner
}

// open builds the stores and the server from o.
func open(o *options, stderr io.Writer) (*app, error) {
	log, err := newLogger(o, stderr)
	if err != nil {
		return nil, err
	}
	st, err := parseStoreURL("store", o.store)
	if err != nil {
		return nil, err
	}
	usersURL := o.users
	switch {
	case usersURL != "":
	case st.scheme == "memory" || st.scheme == "redis": // Redis keeps no accounts
		usersURL = "sqlite:" + filepath.Join(defaultDataDir, "sessiond.db")
	default: // the same database as the sessions
		usersURL = o.store
	}
	ut, err := parseStoreURL("users", usersURL)
	if err != nil || ut.scheme == "memory" || ut.scheme == "redis" {
		return nil, fmt.Errorf("--users %q: use sqlite:PATH or postgres://...", usersURL)
	}
	cfg, scfg, err := o.serverConfig()
	if err != nil {
		return nil, err
	}

	a := &app{opts: o, log: log}
	var closers []func() error
	a.close = func() {
		for _, c := range closers {
			c()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch st.scheme {
	case "memory":
		a.store = memstore.New()
	case "sqlite":
		s, err := sqlitestore.Open(st.path)
		if err != nil {
			return nil, err
		}
		a.store, closers = s, append(closers, s.Close)
	case "postgres":
		s, err := pgstore.Open(ctx, st.path)
		if err != nil {
			return nil, err
		}
		a.store, closers = s, append(closers, func() error { s.Close(); return nil })
	case "redis":
		s, err := redisstore.Open(ctx, st.path)
		if err != nil {
			return nil, err
		}
		a.store, closers = s, append(closers, func() error { s.Close(); return nil })
	}
	var dir interface {
		users.Directory
		auditLog
	}
	switch ut.scheme {
	case "sqlite":
		d, err := sqliteusers.Open(ut.path)
		if err != nil {
			a.close()
			return nil, err
		}
		dir, closers = d, append(closers, d.Close)
	case "postgres":
		d, err := pgusers.Open(ctx, ut.path)
		if err != nil {
			a.close()
			return nil, err
		}
		dir, closers = d, append(closers, func() error { d.Close(); return nil })
	}
	a.accounts, a.audit = users.NewAccounts(dir, users.Params{}), dir
	a.srv, err = server.New(cfg, server.Deps{Store: a.store, Session: scfg, Accounts: a.accounts, Audit: dir, Logger: log})
	if err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

// serverConfig turns the options into the server's and the session
// policy's configuration, reporting every invalid setting.
func (o *options) serverConfig() (server.Config, session.Config, error) {
	var errs []error
	proxies, err := o.proxies()
	errs = append(errs, err)
	public, err := parseURL("public-url", o.publicURL)
	errs = append(errs, err)
	upstream, err := parseURL("upstream", o.upstream)
	errs = append(errs, err)
	if (o.tlsCert == "") != (o.tlsKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	sameSite := map[string]http.SameSite{"lax": http.SameSiteLaxMode, "strict": http.SameSiteStrictMode, "none": http.SameSiteNoneMode}[strings.ToLower(o.cookieSameSite)]
	if sameSite == 0 {
		errs = append(errs, fmt.Errorf("--cookie-samesite %q: use lax, strict or none", o.cookieSameSite))
	}
	scfg := session.Config{
		IdleTimeout:        o.idleTimeout,
		AbsoluteTimeout:    o.absoluteTimeout,
		RememberMeTimeout:  o.rememberMeTimeout,
		MaxSessionsPerUser: o.maxSessionsPerUser,
		RejectAtLimit:      o.rejectAtLimit,
		Cookie: session.CookieConfig{
			Name:                            o.cookieName,
			Domain:                          o.cookieDomain,
			SameSite:                        sameSite,
			InsecureDevelopmentNoSecureFlag: o.devInsecureCookie,
		},
	}
	if o.rememberMeTimeout < 7*24*time.Hour {
		scfg.RememberMeIdleTimeout = o.rememberMeTimeout
	}
	if o.maxSessionsPerUser == 0 {
		errs = append(errs, errors.New("--max-sessions-per-user 0: use a positive limit, or -1 for none"))
	}
	if sameSite != 0 {
		if err := scfg.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%w\n(flags: --idle-timeout, --absolute-timeout, --remember-me-timeout, --cookie-name, --cookie-domain, --cookie-samesite, --dev-insecure-cookie)", err))
		}
	}
	if o.storeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--store-timeout %v: use a positive duration, such as 2s", o.storeTimeout))
	}
	if o.auditRetention < 0 {
		errs = append(errs, fmt.Errorf("--audit-retention %v: use a positive duration, such as 2160h (90 days), or 0 to keep events forever", o.auditRetention))
	}
	cfg := server.Config{PublicURL: public, TrustedProxies: proxies, TLS: o.tlsCert != "", Upstream: upstream, SeparateInternal: o.internalAddr() != "", StoreTimeout: o.storeTimeout}
	return cfg, scfg, errors.Join(errs...)
}

func newLogger(o *options, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", o.logLevel)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", o.logFormat)
}

// serve runs the service until ctx is done, then drains in-flight
// requests.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, rest, err := parseOptions("sessiond serve", args, getenv, stderr, nil)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", rest)
	}
	a, err := open(o, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	if err := a.firstAdmin(ctx, getenv, stdout); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		}
	}
	hs := newServer(a.srv)
	servers := []*http.Server{hs}
	errc := make(chan error, 2)
	// The internal endpoints, apart: plain HTTP, for the proxy and the
	// monitoring on this host or a private network.
	if addr := o.internalAddr(); addr != "" {
		iln, err := net.Listen("tcp", addr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("--internal-listen: %w", err)
		}
		ihs := newServer(a.srv.Internal())
		servers = append(servers, ihs)
		a.log.Info("internal endpoints listening", "url", "http://"+iln.Addr().String(), "paths", "/resolve /healthz /readyz /metrics")
		go func() { errc <- ihs.Serve(iln) }()
	}
	scheme := "http"
	if o.tlsCert != "" {
		scheme = "https"
	}
	a.log.Info("sessiond listening", "url", scheme+"://"+ln.Addr().String(), "store", o.store, "version", version)

	go a.sweep(ctx)
	go func() {
		if o.tlsCert != "" {
			errc <- hs.ServeTLS(ln, o.tlsCert, o.tlsKey)
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
		a.log.Info("shutting down: draining in-flight requests")
	}
	drain, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for _, s := range servers {
		errs = append(errs, s.Shutdown(drain))
	}
	if serveErr != nil {
		return serveErr
	}
	return errors.Join(errs...)
}

// sweep runs sweepOnce once a minute until ctx is done.
func (a *app) sweep(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.sweepOnce(ctx, time.Now())
		}
	}
}

// sweepOnce deletes expired sessions (stores that expire data by
// themselves skip it), so that they are reported and stop using space,
// and audit events from before now less --audit-retention. Every
// instance sweeps; the stores make that safe.
func (a *app) sweepOnce(ctx context.Context, now time.Time) {
	if _, err := a.srv.Sessions().Sweep(ctx, 10_000); err != nil && ctx.Err() == nil {
		a.log.Warn("sweeping expired sessions failed", "err", err)
	}
	if a.opts.auditRetention <= 0 {
		return
	}
	before := now.Add(-a.opts.auditRetention)
	n, err := pruneAudit(ctx, a.audit, before, auditBatch)
	if err != nil && ctx.Err() == nil {
		a.log.Warn("deleting old audit events failed", "err", err, "deleted", n)
	} else if n > 0 {
		a.log.Debug("deleted old audit events", "deleted", n, "before", before)
	}
}

// auditBatch is how many audit events one DeleteBefore deletes. Each batch
// is a transaction of its own, so a sweep with many events to delete (the
// first one after an upgrade, say) lets other writes in between batches
// instead of holding the database's write lock (SQLite) or its row locks
// throughout.
const auditBatch = 1000

// pruneAudit deletes the events of p from before t, batch at a time, until
// a batch comes back short (none left, or another instance is deleting the
// rest) or fails, and returns how many it deleted.
func pruneAudit(ctx context.Context, p audit.Pruner, t time.Time, batch int) (int, error) {
	total := 0
	for {
		n, err := p.DeleteBefore(ctx, t, batch)
		total += n
		if err != nil || n < batch {
			return total, err
		}
	}
}

// firstAdmin creates the user "admin" when there is no user at all, with
// the password from SESSIOND_ADMIN_PASSWORD or a random one printed once.
func (a *app) firstAdmin(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	n, err := a.accounts.Directory().Count(ctx)
	if err != nil || n > 0 {
		return err
	}
	password, generated := getenv("SESSIOND_ADMIN_PASSWORD"), false
	if password == "" {
		password, generated = rand.Text(), true
	}
	if _, err := a.accounts.Add(ctx, "admin", password, []string{"admin"}); err != nil {
		if errors.Is(err, users.ErrExists) { // another instance was first
			return nil
		}
		return fmt.Errorf("creating the first admin: %w", err)
	}
	if generated {
		fmt.Fprintf(stdout, "Created user \"admin\" with password: %s\n(shown once; change it with `sessiond users passwd admin`)\n", password)
	} else {
		fmt.Fprintln(stdout, `Created user "admin" with the password from SESSIOND_ADMIN_PASSWORD.`)
	}
	return nil
}
