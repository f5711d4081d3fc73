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
	"sync"
	"time"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
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
  sessiond users delete NAME               delete a user, ending their sessions
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
		fmt.Fprintln(stderr, "sessiond:", cliError(err))
		return 1
	}
	return 0
}

// stack is what a command works on: the stores the options name and
// the application layer over them.
type stack struct {
	opts   *options
	stores *app.Stores
	app    *app.App
	log    *slog.Logger
}

func (st *stack) close() { st.stores.Close() }

// open builds the stores and the application layer from o, for the
// commands other than serve (which builds the server over them).
func open(o *options, stderr io.Writer) (*stack, error) {
	log, err := newLogger(o, stderr)
	if err != nil {
		return nil, err
	}
	_, scfg, err := o.serverConfig()
	if err != nil {
		return nil, err
	}
	stores, err := openStores(o)
	if err != nil {
		return nil, err
	}
	a, err := app.New(app.Deps{Store: stores.Sessions, Session: scfg, Accounts: users.NewAccounts(stores.Directory, users.Params{}), Audit: stores.Directory, Logger: log})
	if err != nil {
		stores.Close()
		return nil, err
	}
	return &stack{opts: o, stores: stores, app: a, log: log}, nil
}

// openStores opens the stores o names (app.OpenStores): --users defaults
// to the --store database, or to the default SQLite file when the
// sessions are in Redis or in memory, which keep no accounts.
func openStores(o *options) (*app.Stores, error) {
	st, err := app.ParseStoreURL(o.store)
	if err != nil {
		return nil, fmt.Errorf("--store %w", err)
	}
	usersURL := o.users
	if usersURL == "" && (st.Kind == "memory" || st.Kind == "redis") {
		usersURL = "sqlite:" + filepath.Join(defaultDataDir, "sessiond.db")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return app.OpenStores(ctx, o.store, usersURL)
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
// requests for up to --shutdown-timeout, cuts off those still running
// (and returns an error saying so), and logs "sessiond stopped" as its
// last line. A start that fails (a bad setting, a store that does not
// answer, a port in use) creates nothing: the first admin is created
// once the listener is open.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, rest, err := parseOptions("sessiond serve", args, getenv, stderr, nil)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", rest)
	}
	log, err := newLogger(o, stderr)
	if err != nil {
		return err
	}
	cfg, scfg, err := o.serverConfig()
	if err != nil {
		return err
	}
	if o.shutdownTimeout <= 0 {
		return fmt.Errorf("--shutdown-timeout %v: use a positive duration, such as 30s", o.shutdownTimeout)
	}
	cfg.Version = version
	started := false
	defer func() {
		if started {
			log.Info("sessiond stopped")
		}
	}()
	stores, err := openStores(o)
	if err != nil {
		return err
	}
	defer stores.Close()
	srv, err := server.New(cfg, server.Deps{Store: stores.Sessions, Session: scfg, Accounts: users.NewAccounts(stores.Directory, users.Params{}), Audit: stores.Directory, Logger: log})
	if err != nil {
		return err
	}
	st := &stack{opts: o, stores: stores, app: srv.App(), log: log}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	// The internal endpoints, apart: plain HTTP, for the proxy and the
	// monitoring on this host or a private network.
	var iln net.Listener
	if addr := o.internalAddr(); addr != "" {
		if iln, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("--internal-listen: %w", err)
		}
		defer iln.Close()
	}
	if err := st.firstAdmin(ctx, getenv, stdout); err != nil {
		return err
	}
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}
	hs := newServer(srv)
	servers := []*http.Server{hs}
	errc := make(chan error, 2)
	if iln != nil {
		ihs := newServer(srv.Internal())
		servers = append(servers, ihs)
		log.Info("internal endpoints listening", "url", "http://"+iln.Addr().String(), "paths", "/resolve /healthz /readyz /metrics")
		go func() { errc <- ihs.Serve(iln) }()
	}
	scheme := "http"
	if o.tlsCert != "" {
		scheme = "https"
	}
	log.Info("sessiond listening", "url", scheme+"://"+ln.Addr().String(), "store", app.RedactURL(o.store), "version", version)
	started = true
	if plainHTTPBeyondLoopback(ln.Addr(), o.tlsCert != "", len(cfg.TrustedProxies) > 0) {
		log.Warn("serving plain HTTP on an address beyond loopback: browsers send the session cookie (Secure) only over HTTPS or to localhost, and tokens would cross the network in clear; " +
			"serve HTTPS with --tls-cert and --tls-key, or listen on loopback behind a TLS proxy, or name the TLS proxy in front with --trusted-proxies")
	}

	go st.sweep(ctx)
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
		log.Info("shutting down: draining in-flight requests", "timeout", o.shutdownTimeout)
	}
	err = shutdown(servers, o.shutdownTimeout)
	if serveErr != nil {
		return serveErr
	}
	return err
}

// plainHTTPBeyondLoopback reports whether sessiond, listening on addr,
// serves plain HTTP to other hosts with no TLS proxy named in front of it
// (--trusted-proxies): there, browsers drop the Secure session cookie.
func plainHTTPBeyondLoopback(addr net.Addr, tls, trustedProxies bool) bool {
	if tls || trustedProxies {
		return false
	}
	tcp, ok := addr.(*net.TCPAddr)
	return !ok || !tcp.IP.IsLoopback()
}

// shutdown stops servers accepting connections and waits up to timeout
// for the requests in flight to finish; then it closes the connections
// of those still running and returns an error that says so.
func shutdown(servers []*http.Server, timeout time.Duration) error {
	drain, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() { errs[i] = s.Shutdown(drain) })
	}
	wg.Wait()
	err := errors.Join(errs...)
	if errors.Is(err, context.DeadlineExceeded) {
		for _, s := range servers {
			s.Close()
		}
		return fmt.Errorf("requests still in flight after --shutdown-timeout %v were cut off", timeout)
	}
	return err
}

// sweep runs sweepOnce once a minute until ctx is done.
func (st *stack) sweep(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st.sweepOnce(ctx, time.Now())
		}
	}
}

// sweepOnce deletes expired sessions (stores that expire data by
// themselves skip it), so that they are reported and stop using space,
// and audit events from before now less --audit-retention. Every
// instance sweeps; the stores make that safe.
func (st *stack) sweepOnce(ctx context.Context, now time.Time) {
	if _, err := st.app.Sessions().Sweep(ctx, 10_000); err != nil && ctx.Err() == nil {
		st.log.Warn("sweeping expired sessions failed", "err", err)
	}
	if st.opts.auditRetention <= 0 {
		return
	}
	before := now.Add(-st.opts.auditRetention)
	n, err := pruneAudit(ctx, st.stores.Directory, before, auditBatch)
	if err != nil && ctx.Err() == nil {
		st.log.Warn("deleting old audit events failed", "err", err, "deleted", n)
	} else if n > 0 {
		st.log.Debug("deleted old audit events", "deleted", n, "before", before)
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
func (st *stack) firstAdmin(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	password, generated := getenv("SESSIOND_ADMIN_PASSWORD"), false
	if password == "" {
		password, generated = rand.Text(), true
	}
	created, err := st.app.CreateFirstAdmin(ctx, password)
	switch {
	case err != nil:
		return fmt.Errorf("creating the first admin: %w", err)
	case !created:
	case generated:
		fmt.Fprintf(stdout, "Created user \"admin\" with password: %s\n(shown once; change it with `sessiond users passwd admin`)\n", password)
	default:
		fmt.Fprintln(stdout, `Created user "admin" with the password from SESSIOND_ADMIN_PASSWORD.`)
	}
	return nil
}
