package pgstore

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/session/storetest"
)

// proxy forwards TCP connections from a loopback address to the database,
// and can cut them all, as a network partition or a database crash would.
type proxy struct {
	t      testing.TB
	target string        // network address of the database
	addr   string        // where the proxy listens
	delay  time.Duration // how late what the database sends is passed on

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
}

// startProxy starts a proxy to the database at url, on a free loopback
// port, and stops it when the test ends.
func startProxy(t testing.TB, url string) *proxy {
	t.Helper()
	return startDelayProxy(t, url, 0)
}

// startDelayProxy is startProxy with a proxy that passes on what the
// database sends delay late, as a distant client would see it.
func startDelayProxy(t testing.TB, url string, delay time.Duration) *proxy {
	t.Helper()
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	network, target := "tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if len(cfg.Host) > 0 && cfg.Host[0] == '/' {
		network, target = "unix", cfg.Host+"/.s.PGSQL."+strconv.Itoa(int(cfg.Port))
	}
	p := &proxy{t: t, target: network + ":" + target, delay: delay}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.stop)
	return p
}

// url returns base with its host and port replaced by the proxy's.
func (p *proxy) url(base string) string {
	p.t.Helper()
	host, port, _ := net.SplitHostPort(p.addr)
	u, err := testenv.WithParam(base, "host", host)
	if err == nil {
		u, err = testenv.WithParam(u, "port", port)
	}
	if err == nil {
		u, err = testenv.WithParam(u, "connect_timeout", "2")
	}
	if err != nil {
		p.t.Fatal(err)
	}
	return u
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			network, addr := "tcp", p.target[len("tcp:"):]
			if p.target[:5] == "unix:" {
				network, addr = "unix", p.target[len("unix:"):]
			}
			d, err := net.Dial(network, addr)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln { // stopped meanwhile
				p.mu.Unlock()
				c.Close()
				d.Close()
				return
			}
			p.conns = append(p.conns, c, d)
			p.mu.Unlock()
			go func() { io.Copy(d, c); d.Close() }()
			if p.delay > 0 {
				go delayCopy(c, d, p.delay)
				continue
			}
			go func() { io.Copy(c, d); c.Close() }()
		}
	}()
}

// delayCopy copies what src sends to dst, each chunk delay after it
// arrived, in order, until src or dst fails; then it closes both.
func delayCopy(dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		b   []byte
		due time.Time
	}
	chunks := make(chan chunk, 1<<14)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 64<<10)
			n, err := src.Read(buf)
			if n > 0 {
				chunks <- chunk{buf[:n], time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for ch := range chunks {
		time.Sleep(time.Until(ch.due))
		if _, err := dst.Write(ch.b); err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
	for range chunks {
	}
}

// stop closes the listener and every forwarded connection.
func (p *proxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// restart listens again on the same address.
func (p *proxy) restart() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// TestDatabaseDown cuts the connection to the database under an open
// Store: every method must fail with an error that cannot be mistaken for
// an answer (not ErrNotFound, not ErrConflict), within its context's
// deadline; and the Store must recover by itself when the database is back.
func TestDatabaseDown(t *testing.T) {
	base := testenv.PostgresSchema(t)
	p := startProxy(t, base)
	st := openAt(t, p.url(base))
	s := storetest.NewSession(storetest.NewID())
	storetest.MustCreate(t, st, s)
	if _, err := st.ByHash(ctx, s.TokenHash); err != nil {
		t.Fatalf("ByHash through the proxy: %v", err)
	}

	p.stop()
	ops := map[string]func(context.Context) error{
		"Create": func(ctx context.Context) error {
			_, err := st.Create(ctx, storetest.NewSession(s.UserID), session.Limit{})
			return err
		},
		"Create with limit": func(ctx context.Context) error {
			_, err := st.Create(ctx, storetest.NewSession(s.UserID), session.Limit{Max: 3})
			return err
		},
		"ByHash":          func(ctx context.Context) error { _, err := st.ByHash(ctx, s.TokenHash); return err },
		"ByHash(unknown)": func(ctx context.Context) error { _, err := st.ByHash(ctx, storetest.NewHash()); return err },
		"ByID":            func(ctx context.Context) error { _, err := st.ByID(ctx, s.ID); return err },
		"ByID(unknown)":   func(ctx context.Context) error { _, err := st.ByID(ctx, storetest.NewID()); return err },
		"Update":          func(ctx context.Context) error { return st.Update(ctx, s.Clone()) },
		"Touch": func(ctx context.Context) error {
			return st.Touch(ctx, s.ID, session.TouchInfo{At: time.Now(), IdleDeadline: time.Now().Add(time.Hour)})
		},
		"Delete":       func(ctx context.Context) error { return st.Delete(ctx, storetest.NewID()) },
		"ListByUser":   func(ctx context.Context) error { _, err := st.ListByUser(ctx, s.UserID); return err },
		"DeleteByUser": func(ctx context.Context) error { _, err := st.DeleteByUser(ctx, storetest.NewID(), ""); return err },
		"DeleteExpired": func(ctx context.Context) error {
			_, err := st.DeleteExpired(ctx, time.Now(), 10)
			return err
		},
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			start := time.Now()
			err := op(ctx)
			switch {
			case err == nil:
				t.Errorf("%s with the database unreachable: no error", name)
			case errors.Is(err, session.ErrNotFound), errors.Is(err, session.ErrConflict),
				errors.Is(err, session.ErrTooManySessions), errors.Is(err, session.ErrInvalidRecord):
				t.Errorf("%s with the database unreachable: got %v, which reads as an answer; want a plain error", name, err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("%s took %v to fail", name, d)
			}
		})
	}

	p.restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := st.ByHash(ctx, s.TokenHash)
		if err == nil {
			if got.ID != s.ID {
				t.Errorf("after recovery ByHash returned %s, want %s", got.ID, s.ID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Store did not recover within 10 s of the database coming back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOpenUnreachable checks that Open of a database nobody listens for
// fails, promptly, rather than returning a Store.
func TestOpenUnreachable(t *testing.T) {
	base := testenv.Postgres(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close() // nothing listens on port now
	url, err := testenv.WithParam(base, "host", "127.0.0.1")
	if err == nil {
		url, err = testenv.WithParam(url, "port", port)
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if st, err := Open(ctx, url); err == nil {
		st.Close()
		t.Fatal("Open of an unreachable database succeeded")
	}
}
