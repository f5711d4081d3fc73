package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessiond/sessiond/assertion"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// userAgent is a browser's User-Agent, sent with every request (as a
// forward-auth proxy passes the browser's headers on).
const userAgent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

// sessionsPerUser is how many of the preloaded sessions each user holds,
// well under the default MaxSessionsPerUser (100).
const sessionsPerUser = 10

// serveMain is "resolveload serve": one server under test, in a process
// of its own so that its heap and GC never touch the other cases'. It
// preloads its store, writes the cookies to send to a file, prints
//
//	READY <server URL> <control URL> <cookie file>
//
// and serves until its standard input is closed. The control listener
// serves net/http/pprof and /clock.
func serveMain(args []string) error {
	fs := flag.NewFlagSet("resolveload serve", flag.ContinueOnError)
	kind := fs.String("kind", "", "bare, bare-headers, sqlite, sqlite-assertion, memstore, redis, redis-unfenced, redis-nocache, postgres, scs-memstore, scs-redis or scs-postgres")
	n := fs.Int("sessions", 1000, "sessions to preload (bare: random cookies to send)")
	dir := fs.String("dir", "", "directory for the database and the cookie file; its base name names the case's Redis keys and PostgreSQL schema")
	redisURL := fs.String("redis", defaultRedis, "the Redis of the redis kinds")
	pgURL := fs.String("postgres", defaultPostgres, "the PostgreSQL database of the postgres kind")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *n <= 0 {
		return errors.New("serve needs -dir and -sessions > 0")
	}
	// The driver closes our standard input to stop us; if it dies, so
	// does the pipe. Before READY, stop at once (a preload can take a
	// minute); after, shut down gracefully.
	var ready atomic.Bool
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		if !ready.Load() {
			os.Exit(1)
		}
		close(stop)
	}()
	clk := &clock{}
	var (
		h       http.Handler
		cookies []string
		be      *backend
		err     error
	)
	switch *kind {
	case "bare":
		h, cookies = bareHandler(*n, false)
	case "bare-headers":
		h, cookies = bareHandler(*n, true)
	default:
		if be, err = openBackend(context.Background(), *kind, *dir, *redisURL, *pgURL); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		defer func() {
			if err := be.close(); err != nil {
				fmt.Fprintln(os.Stderr, "resolveload:", err)
			}
		}()
		if strings.HasPrefix(*kind, "scs-") {
			h, cookies, err = scsHandler(be, *n)
		} else {
			h, cookies, err = sessiondHandler(be, *n, clk)
		}
	}
	if err != nil {
		return err
	}
	cookieFile := filepath.Join(*dir, "cookies.txt")
	if err := os.WriteFile(cookieFile, []byte(strings.Join(cookies, "\n")+"\n"), 0o600); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// The settings of "sessiond serve" (cmd/sessiond/sessiond.go), for
	// every case alike.
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	go hs.Serve(ln)
	go http.Serve(ctl, controlMux(clk, be))
	ready.Store(true)
	fmt.Printf("READY http://%s http://%s %s\n", ln.Addr(), ctl.Addr(), cookieFile)
	<-stop
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return hs.Shutdown(ctx)
}

// bareHandler is the baseline: net/http answering 200 with one header,
// reading nothing from the request. With sameHeaders it answers with the
// headers sessiond's /resolve sends for a valid session instead (fixed
// values of the same lengths), which sets apart what the shape of the
// answer costs from what finding the session costs. Its cookies look like
// session cookies (43 random characters), so that the load generator
// sends the same requests for every case.
func bareHandler(n int, sameHeaders bool) (http.Handler, []string) {
	cookies := make([]string, n)
	for i := range cookies {
		cookies[i] = "__Host-sid=" + rand.Text() + rand.Text()[:17]
	}
	// The values are fixed, and set as /resolve sets its own: by their
	// canonical keys, with no copy per request.
	type header struct {
		key    string
		values []string
	}
	identity := []header{
		{"Remote-User", []string{"user000000"}},
		{"Remote-Groups", []string{"member"}},
		{"X-User-Id", []string{"u_load000000"}},
		{"X-Session-Id", []string{"1TbUQoyfUucJF4T_yznStQ"}},
		{"X-Session-Expires-At", []string{"2026-11-22T01:09:27Z"}},
		{"X-Session-Absolute-Expires-At", []string{"2026-11-22T12:39:27Z"}},
		{"X-Session-Authenticated-At", []string{"2026-11-22T00:39:27Z"}},
		{"X-Session-Aal", []string{"1"}},
		{"X-Session-Amr", []string{"pwd"}},
	}
	noStore := []string{"no-store"}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if sameHeaders {
			for _, f := range identity {
				h[f.key] = f.values
			}
		}
		h["Cache-Control"] = noStore
		// 200 by returning, as /resolve answers.
	})
	return h, cookies
}

// sessiondHandler is sessiond's real server (server.New, as "sessiond
// serve" builds it: logs as text at level info) on the stores of be, with
// n live sessions, sessionsPerUser per user. It returns the cookies naming
// them.
func sessiondHandler(be *backend, n int, clk *clock) (http.Handler, []string, error) {
	ctx := context.Background()
	store, udir := be.store, be.dir
	accounts := users.NewAccounts(udir, users.Params{})
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg := server.Config{Now: clk.Now}
	if be.keys != nil {
		iss, err := assertion.New(ctx, be.keys, assertion.Config{Issuer: "https://login.example.com"}) // the real clock: the key schedule must not jump with clk
		if err != nil {
			return nil, nil, err
		}
		cfg.Assertions = iss
	}
	srv, err := server.New(cfg, server.Deps{
		Store: store, Session: session.Config{Now: clk.Now}, Accounts: accounts, Audit: udir, Logger: log,
	})
	if err != nil {
		return nil, nil, err
	}

	// Users: one argon2id hash for all, written straight to the directory
	// (hashing 10k passwords would take minutes and is not under test).
	nUsers := max(1, n/sessionsPerUser)
	hash := users.HashPassword(rand.Text(), users.DefaultParams)
	userIDs := make([]string, nUsers)
	start := time.Now()
	for i := range userIDs {
		id := fmt.Sprintf("u_load%06d", i)
		now := time.Now().UTC().Truncate(time.Microsecond)
		u := &users.User{ID: id, Username: fmt.Sprintf("user%06d", i), Roles: []string{"member"}, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}
		if err := be.loadDir.Create(ctx, u); err != nil {
			return nil, nil, fmt.Errorf("creating user %d: %w", i, err)
		}
		userIDs[i] = id
	}
	fmt.Fprintf(os.Stderr, "resolveload: %d users in %v\n", nUsers, time.Since(start).Round(time.Millisecond))

	// Sessions: through a Manager of their own with a clock stopped at t0
	// and no event sink, so that every session was last seen at t0 and no
	// audit event is written per session. The server's clock starts at t0
	// too (see clock). t0 is clockLead ahead of the real time because the
	// stores expire sessions by the real clock (IdleTimeout, 30 minutes by
	// default, after t0), and a run on a busy machine can take longer.
	t0 := time.Now().Add(clockLead)
	clk.t0 = t0
	clk.set(0)
	loader, err := session.New(be.loadStore, session.Config{Now: func() time.Time { return t0 }})
	if err != nil {
		return nil, nil, err
	}
	cookies := make([]string, n)
	start = time.Now()
	// be.loaders goroutines, goroutine g creating sessions g, g+loaders, ...
	errs := make([]error, be.loaders)
	var wg sync.WaitGroup
	for g := range be.loaders {
		wg.Go(func() {
			for i := g; i < n; i += be.loaders {
				_, tok, err := loader.Create(ctx, session.Login{
					UserID: userIDs[i%nUsers],
					Roles:  []string{"member"},
					AMR:    []string{session.AMRPassword},
					Client: session.Client{IP: "127.0.0.1", UserAgent: userAgent},
				})
				if err != nil {
					errs[g] = fmt.Errorf("creating session %d: %w", i, err)
					return
				}
				cookies[i] = srv.Sessions().Config().Cookie.Name + "=" + tok
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(os.Stderr, "resolveload: %d sessions in %v\n", n, time.Since(start).Round(time.Millisecond))
	if err := be.loaded(); err != nil {
		return nil, nil, err
	}

	// Resolve every session once, which checks the setup and fills the
	// server's username cache and a store's session cache, as the first
	// minutes of traffic would: the rounds measure the steady state, not
	// the start.
	for i := range n {
		r := httptest.NewRequest(http.MethodGet, "/resolve", nil)
		r.Header.Set("Cookie", cookies[i])
		r.Header.Set("User-Agent", userAgent)
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		if w.Code != http.StatusOK || w.Header().Get("Remote-User") == "" {
			return nil, nil, fmt.Errorf("resolve of session %d: status %d, Remote-User %q", i, w.Code, w.Header().Get("Remote-User"))
		}
	}
	return srv, cookies, nil
}

// clockLead is how far ahead of the real time the servers' clocks run:
// longer than any run of the driver.
const clockLead = 6 * time.Hour

// clock is the server's clock: the real one, shifted so that it reads t0
// (when the sessions were created) plus a chosen offset at the moment the
// driver sets it. The driver sets it back before each round so that no
// round meets sessions due for an idle-deadline write (TouchInterval, one
// minute by default) by accident, and forward on purpose for the case
// that measures those writes.
type clock struct {
	t0    time.Time
	shift atomic.Int64 // added to time.Now()
}

func (c *clock) Now() time.Time { return time.Now().Add(time.Duration(c.shift.Load())) }

// set makes the clock read t0+at now.
func (c *clock) set(at time.Duration) {
	c.shift.Store(int64(c.t0.Add(at).Sub(time.Now())))
}

// controlMux serves net/http/pprof, POST /clock?at=DURATION and GET
// /store-cpu: the CPU time, in nanoseconds, that the server of the
// case's store has used so far (0 for a store in this process, and for
// bare).
func controlMux(clk *clock, be *backend) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("POST /clock", func(w http.ResponseWriter, r *http.Request) {
		at, err := time.ParseDuration(r.FormValue("at"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		clk.set(at)
	})
	mux.HandleFunc("GET /store-cpu", func(w http.ResponseWriter, r *http.Request) {
		var d time.Duration
		if be != nil {
			var err error
			if d, err = be.storeCPU(r.Context()); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		fmt.Fprint(w, int64(d))
	})
	return mux
}
