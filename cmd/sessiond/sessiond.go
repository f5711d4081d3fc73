package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/assertion"
	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
	"github.com/sessiond/sessiond/webhook"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Main runs sessiond with args (without the program name) and returns the
// exit code: 0, 1 when a command failed, 2 for a mistake in how it was
// called (an unknown command or flag, a bad value, a missing argument).
// "--help" on any command writes its help to stdout and returns 0. It
// serves until ctx is done.
func Main(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		writeUsage(stderr)
		return 2
	}
	err := run(ctx, args, getenv, stdin, stdout, stderr)
	var usage *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintln(stderr, "sessiond:", usage.msg)
		fmt.Fprintf(stderr, "Run \"%s\" for usage.\n", strings.TrimSpace("sessiond help "+usage.cmd))
		return 2
	}
	fmt.Fprintln(stderr, "sessiond:", cliError(err))
	return 1
}

// isHelp reports whether a is a request for help.
func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// run carries out the command args name; a request for help writes it to
// stdout and returns flag.ErrHelp.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	switch {
	case isHelp(args[0]):
		writeUsage(stdout)
		return flag.ErrHelp
	case args[0] == "help":
		return help(args[1:], stdout)
	case isGroup(args[0]) && (len(args) == 1 || isHelp(args[1])):
		if len(args) == 1 {
			return &usageError{cmd: args[0], msg: args[0] + ": which command?"}
		}
		writeGroupUsage(stdout, args[0])
		return flag.ErrHelp
	}
	c, rest, err := lookupCommand(args)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(rest, isHelp) {
		writeHelp(stdout, c)
		return flag.ErrHelp
	}
	switch c.name {
	case "serve":
		return serve(ctx, rest, getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "sessiond", version)
		return nil
	case "webhook-secret":
		fmt.Fprintln(stdout, webhook.NewSecret())
		return nil
	}
	return admin(ctx, c, rest, getenv, stdin, stdout, stderr)
}

// help writes the help of the command args name (none: the list of
// commands) and returns flag.ErrHelp, or a usageError for an unknown one.
func help(args []string, stdout io.Writer) error {
	switch {
	case len(args) == 0:
		writeUsage(stdout)
		return flag.ErrHelp
	case len(args) == 1 && isGroup(args[0]):
		writeGroupUsage(stdout, args[0])
		return flag.ErrHelp
	}
	c := commands[strings.Join(args, " ")]
	if c == nil {
		_, _, err := lookupCommand(args)
		if err == nil {
			err = &usageError{msg: fmt.Sprintf("no help for %q", strings.Join(args, " "))}
		}
		return err
	}
	writeHelp(stdout, c)
	return flag.ErrHelp
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
// commands other than serve (which builds the server over them), and
// names the databases on stderr, passwords redacted. The log is at warn
// unless --log-level was set, so the audit lines of the change a command
// makes do not bury its answer.
func open(o *options, stderr io.Writer) (*stack, error) {
	if !o.set["log-level"] {
		o.logLevel = "warn"
	}
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
	if u := o.usersURL(); u == "" || u == o.store {
		fmt.Fprintf(stderr, "sessiond: database %s\n", app.RedactURL(o.store))
	} else {
		fmt.Fprintf(stderr, "sessiond: sessions in %s, users in %s\n", app.RedactURL(o.store), app.RedactURL(u))
	}
	a, err := app.New(o.appDeps(stores, scfg, log))
	if err != nil {
		stores.Close()
		return nil, err
	}
	return &stack{opts: o, stores: stores, app: a, log: log}, nil
}

// appDeps are the parts of an application layer over stores with the
// session policy scfg, as serve (under its server) and the other commands
// build it.
func (o *options) appDeps(stores *app.Stores, scfg session.Config, log *slog.Logger) app.Deps {
	return app.Deps{
		Store: stores.Sessions, Session: scfg, Accounts: users.NewAccounts(stores.Directory, users.Params{}), Audit: stores.Directory, Logger: log,
		SecondFactor: app.SecondFactorPolicy{Everyone: o.requireSecondFactor, Roles: splitList(o.requireSecondFactorFor)},
	}
}

// usersURL is where the accounts are (app.OpenStores): --users, or ""
// for the --store database, or the default SQLite file when the sessions
// are in Redis or in memory, which keep no accounts.
func (o *options) usersURL() string {
	if o.users != "" {
		return o.users
	}
	if st, err := app.ParseStoreURL(o.store); err == nil && (st.Kind == "memory" || st.Kind == "redis") {
		return "sqlite:" + filepath.Join(defaultDataDir, "sessiond.db")
	}
	return ""
}

// requireDatabase fails if a SQLite file that o names does not exist, so
// that a command run in the wrong folder says so rather than creating an
// empty database and answering from it. PostgreSQL and Redis are never
// created by opening them.
func (o *options) requireDatabase() error {
	for _, u := range []string{o.store, o.usersURL()} {
		st, err := app.ParseStoreURL(u)
		if err != nil || st.Kind != "sqlite" {
			continue
		}
		if _, err := os.Stat(st.Path); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("no database at %s; run it where sessiond serve keeps its data, or pass --store/--users", st.Path)
		}
	}
	return nil
}

// openStores opens the stores o names (app.OpenStores).
func openStores(o *options) (*app.Stores, error) {
	if _, err := app.ParseStoreURL(o.store); err != nil {
		return nil, fmt.Errorf("--store %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return app.OpenStores(ctx, o.store, o.usersURL())
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
			errs = append(errs, errors.New(policyFlags.Replace(err.Error())))
		}
	}
	if o.storeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--store-timeout %v: use a positive duration, such as 2s", o.storeTimeout))
	}
	if o.shutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout %v: use a positive duration, such as 30s", o.shutdownTimeout))
	}
	if o.auditRetention < 0 {
		errs = append(errs, fmt.Errorf("--audit-retention %v: use a positive duration, such as 2160h (90 days), or 0 to keep events forever", o.auditRetention))
	}
	if o.assertion {
		if public == nil {
			errs = append(errs, errors.New("--assertion needs --public-url: it is the issuer (iss) of the assertions"))
		} else if acfg, err := o.assertionConfig(public); err != nil {
			errs = append(errs, err)
		} else if err := acfg.Validate(); err != nil {
			errs = append(errs, errors.New(assertionFlags.Replace(err.Error())))
		}
	}
	cfg := server.Config{PublicURL: public, TrustedProxies: proxies, TLS: o.tlsCert != "", Upstream: upstream, SeparateInternal: o.internalAddr() != "", StoreTimeout: o.storeTimeout}
	return cfg, scfg, errors.Join(errs...)
}

// policyFlags rewords session.Config.Validate's messages with the flags
// that set each field.
var policyFlags = strings.NewReplacer(
	"session: ", "",
	"RememberMeIdleTimeout", "--remember-me-timeout",
	"RememberMeTimeout", "--remember-me-timeout",
	"IdleTimeout", "--idle-timeout",
	"AbsoluteTimeout", "--absolute-timeout",
	"InsecureDevelopmentNoSecureFlag", "--dev-insecure-cookie",
	"drop Domain", "drop --cookie-domain",
	"forbids a Domain", "forbids --cookie-domain",
	"SameSite=None", "--cookie-samesite none",
	"cookie name", "--cookie-name",
)

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
		return &usageError{cmd: "serve", msg: fmt.Sprintf("serve takes no arguments, got %q", rest)}
	}
	log, err := newLogger(o, stderr)
	if err != nil {
		return err
	}
	cfg, scfg, err := o.serverConfig()
	if err != nil {
		return err
	}
	cfg.Version = version
	hooks, err := o.webhookHooks()
	if err != nil {
		return err
	}
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
	if o.assertion {
		keys, err := openKeys(ctx, o)
		if err != nil {
			return err
		}
		defer keys.Close()
		acfg, err := o.assertionConfig(cfg.PublicURL)
		if err != nil {
			return err
		}
		acfg.Logger = log
		iss, err := assertion.New(ctx, keys, acfg)
		if err != nil {
			return err
		}
		defer iss.Close()
		cfg.Assertions = iss
		log.Info("identity assertions on", "issuer", acfg.Issuer, "jwks", acfg.Issuer+"/.well-known/jwks.json")
	}
	wh, err := openWebhooks(ctx, o, hooks, log)
	if err != nil {
		return err
	}
	defer wh.close()
	deps := o.appDeps(stores, scfg, log)
	deps.Webhooks = wh.dispatcher
	srv, err := server.New(cfg, deps)
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
	// Envoy's ext_authz over gRPC, apart: plain gRPC, for the proxy.
	var gln net.Listener
	if o.grpcListen != "" {
		if gln, err = net.Listen("tcp", o.grpcListen); err != nil {
			return fmt.Errorf("--grpc-listen: %w", err)
		}
		defer gln.Close()
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
	errc := make(chan error, 3)
	var gs *grpc.Server
	if gln != nil {
		gs = srv.GRPC()
		log.Info("ext_authz gRPC listening", "addr", gln.Addr().String(), "service", "envoy.service.auth.v3.Authorization")
		if tcp, ok := gln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
			log.Warn("serving plain gRPC on an address beyond loopback: the checks carry session cookies and bearer tokens in clear; keep --grpc-listen on loopback or a private network only Envoy reaches")
		}
		go func() { errc <- gs.Serve(gln) }()
	}
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
	// The dispatcher stops, its deliveries in flight done (each within
	// --webhook-timeout), before the outbox and the stores close.
	dctx, stopDispatch := context.WithCancel(context.Background())
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		if err := wh.dispatcher.Run(dctx); err != nil {
			log.Error("webhook delivery stopped", "err", err)
		}
	}()
	defer func() { stopDispatch(); <-dispatched }()
	if len(hooks) > 0 {
		log.Info("webhooks on", "hooks", len(hooks))
	}
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
	err = shutdown(servers, gs, o.shutdownTimeout)
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

// shutdown stops servers (and gs, if not nil) accepting connections and
// waits up to timeout for the requests in flight to finish; then it
// closes the connections of those still running and returns an error
// that says so.
func shutdown(servers []*http.Server, gs *grpc.Server, timeout time.Duration) error {
	drain, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	errs := make([]error, len(servers)+1)
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() { errs[i] = s.Shutdown(drain) })
	}
	if gs != nil {
		wg.Go(func() { errs[len(servers)] = stopGRPC(drain, gs) })
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

// stopGRPC stops gs gracefully, waiting for its calls in flight until
// ctx is done; then it closes its connections and returns ctx's error.
func stopGRPC(ctx context.Context, gs *grpc.Server) error {
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		gs.Stop()
		<-done
		return ctx.Err()
	}
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
		fmt.Fprintf(stdout, "Created user \"admin\" with password: %s\n(shown once; change it with `%s users passwd admin`)\n", password, selfCommand(os.Args[0]))
	default:
		fmt.Fprintln(stdout, `Created user "admin" with the password from SESSIOND_ADMIN_PASSWORD.`)
	}
	return nil
}
