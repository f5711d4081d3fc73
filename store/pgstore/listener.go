package pgstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sessiond/sessiond/internal/lease"
)

// listener keeps a cache coherent: it holds a connection of its own that
// LISTENs on the channel the table's trigger notifies (migration 3 in
// schema.go), drops the cached copy of each session a notification names,
// and sends the fences that lookups wait for before they answer from the
// cache.
// docs/stores/postgres.md has the design and why it is correct.
//
// A lookup that begins within lease.Read of the moment an answered fence
// was sent needs no fence of its own (see package lease): the Stores that
// end or narrow sessions pay for it, with lease.Settle.
//
// The connection is made by pgconn and then taken over (Hijack): one
// goroutine (read) reads everything the server sends, in order, while
// fences are written to it from others. So a fence's reply is read after
// every notification the server sent before it, and the cache has
// applied them when the fence's waiters wake.
//
// While the connection is down (lost, timed out, or not made yet), the
// cache is empty and takes no entries, every fence fails at once, and a
// goroutine reconnects with backoff; a new connection empties the cache
// again before it serves a fence.
type listener struct {
	cfg     *pgconn.Config
	cache   *cache
	timeout time.Duration // how long a fence may take before the connection is dropped

	// onNotify, if set, is called before each notification is applied:
	// tests delay delivery with it.
	onNotify atomic.Pointer[func()]
	// sent counts the fences sent; conns the connections made.
	sent, conns atomic.Int64
	// noLease makes every lookup wait for a fence of its own, as if
	// lease.Read were 0: tests that count fences set it.
	noLease bool

	// lease rests on the latest fence answered. clock is the database's
	// clock less the Now at which that fence was sent, in ns: the
	// fence's at×1000 − its sentAt. Both are written in fenced, with mu
	// held, clock first, so a lookup that finds the lease covering it
	// finds the clock of that fence or of a later one: either will do.
	lease lease.Lease
	clock atomic.Int64

	mu   sync.Mutex
	conn net.Conn // nil while down
	pid  uint32   // the backend of conn
	oid  uint32   // the table whose channel conn listens on
	// inflight is the fence sent on conn and not answered yet; pending
	// gathers the lookups that came meanwhile, for the fence that is sent
	// when inflight is answered.
	inflight, pending *fenceGroup
	sentAt            int64 // the Now just before inflight was written
	closed            bool
	stop              chan struct{} // closed by close
	wg                sync.WaitGroup
}

// fenceGroup is one fence and the lookups waiting on it.
type fenceGroup struct {
	done chan struct{} // closed when the fence has been answered or has failed
	// at is the database's clock (now()) in the fence's transaction, in
	// µs since the Unix epoch; err is why the fence failed. Both are set
	// before done is closed.
	at  int64
	err error
}

// fenceTimeout is how long a fence may go unanswered before the listening
// connection is deemed lost.
const fenceTimeout = time.Second

// fenceStmt is the name of the fence's prepared statement, and fenceSQL
// the statement: the database's clock, for the cache to tell expired
// sessions by, and what tells the answer comes from the session that
// listens on the table's channel (a pooler in transaction mode could send
// the fence to another backend).
const (
	fenceStmt = "sessiond_fence"
	fenceSQL  = `SELECT (extract(epoch FROM now()) * 1000000)::int8, pg_backend_pid(), to_regclass('sessiond_sessions')::oid`
)

// fenceMessage is what a fence sends: Bind (the prepared fence, results
// in binary), Execute and Sync.
var fenceMessage = func() []byte {
	var b []byte
	for _, m := range []pgproto3.FrontendMessage{
		&pgproto3.Bind{PreparedStatement: fenceStmt, ResultFormatCodes: []int16{pgx.BinaryFormatCode}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	} {
		var err error
		if b, err = m.Encode(b); err != nil {
			panic(err)
		}
	}
	return b
}()

var (
	errListenerDown = errors.New("pgstore: cache listener not connected")
	errFenceTimeout = errors.New("pgstore: cache fence unanswered")
	errFenceOther   = errors.New("pgstore: cache fence answered by another session or table (is a pooler in transaction mode between sessiond and PostgreSQL? set cache=off)")
)

func newListener(cfg *pgconn.Config, c *cache) *listener {
	return &listener{cfg: cfg, cache: c, timeout: fenceTimeout, stop: make(chan struct{})}
}

// start starts the goroutine that watches for fences gone unanswered.
func (l *listener) start() {
	l.wg.Add(1)
	go l.watch()
}

// connect makes the listening connection and starts reading it.
func (l *listener) connect(ctx context.Context) error {
	pc, err := pgconn.ConnectConfig(ctx, l.cfg)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		pc.Close(context.Background())
		return err
	}
	res, err := pc.Exec(ctx, `SELECT pg_backend_pid(), to_regclass('sessiond_sessions')::oid`).ReadAll()
	if err != nil {
		return fail(err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || res[0].Rows[0][1] == nil {
		return fail(errors.New("no table sessiond_sessions in the search path"))
	}
	pid, err1 := strconv.ParseUint(string(res[0].Rows[0][0]), 10, 32)
	oid, err2 := strconv.ParseUint(string(res[0].Rows[0][1]), 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return fail(err)
	}
	channel := "sessiond_sessions_" + strconv.FormatUint(oid, 10)
	if _, err := pc.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()).ReadAll(); err != nil {
		return fail(err)
	}
	if _, err := pc.Prepare(ctx, fenceStmt, fenceSQL, nil); err != nil {
		return fail(err)
	}
	if err := pc.SyncConn(ctx); err != nil {
		return fail(err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		return fail(err)
	}
	fr := pgproto3.NewFrontend(hc.Conn, hc.Conn)

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		hc.Conn.Close()
		return errors.New("closed")
	}
	// Notifications pgconn read before the connection was handed over
	// are lost: the cache starts empty, after them, and refuses what
	// reads that began before now would add.
	l.cache.reset(true)
	l.conn, l.pid, l.oid = hc.Conn, uint32(pid), uint32(oid)
	l.conns.Add(1)
	l.wg.Add(1)
	l.mu.Unlock()
	go l.read(hc.Conn, fr, channel)
	return nil
}

// read reads conn until it fails: notifications, which it applies to the
// cache, and the fences' replies.
func (l *listener) read(conn net.Conn, fr *pgproto3.Frontend, channel string) {
	defer l.wg.Done()
	var (
		row      [3][]byte // the fence's values
		gotRow   bool
		fenceErr error
	)
	for {
		msg, err := fr.Receive()
		if err != nil {
			l.fail(conn, err)
			return
		}
		switch m := msg.(type) {
		case *pgproto3.NotificationResponse:
			if m.Channel != channel {
				continue
			}
			if f := l.onNotify.Load(); f != nil {
				(*f)()
			}
			if m.Payload == "" {
				l.cache.invalidateAll()
			} else {
				l.cache.invalidate(m.Payload)
			}
		case *pgproto3.DataRow:
			gotRow = len(m.Values) == len(row)
			for i := range row {
				row[i] = nil
				if gotRow && m.Values[i] != nil {
					row[i] = append(row[i][:0:0], m.Values[i]...)
				}
			}
		case *pgproto3.ErrorResponse:
			fenceErr = pgconn.ErrorResponseToPgError(m)
		case *pgproto3.ReadyForQuery:
			var at int64
			err := fenceErr
			if err == nil {
				at, err = l.checkFence(row, gotRow)
			}
			if !l.fenced(conn, at, err) {
				l.fail(conn, errors.New("pgstore: cache listener: a reply to no fence"))
				return
			}
			if err != nil {
				l.fail(conn, err)
				return
			}
			gotRow, fenceErr = false, nil
		}
	}
}

// checkFence checks a fence's row and returns the database's clock in it.
func (l *listener) checkFence(row [3][]byte, ok bool) (int64, error) {
	if !ok || len(row[0]) != 8 || len(row[1]) != 4 || len(row[2]) != 4 {
		return 0, errFenceOther
	}
	l.mu.Lock()
	pid, oid := l.pid, l.oid
	l.mu.Unlock()
	if binary.BigEndian.Uint32(row[1]) != pid || binary.BigEndian.Uint32(row[2]) != oid {
		return 0, errFenceOther
	}
	return int64(binary.BigEndian.Uint64(row[0])), nil
}

// fenced completes the fence in flight on conn with at and err, and sends
// the pending group's, if any. It reports false if no fence was in flight.
func (l *listener) fenced(conn net.Conn, at int64, err error) bool {
	l.mu.Lock()
	g := l.inflight
	if g == nil || l.conn != conn {
		l.mu.Unlock()
		return false
	}
	g.at, g.err = at, err
	if err == nil {
		l.clock.Store(at*1000 - l.sentAt)
		l.lease.Extend(l.sentAt)
	}
	l.inflight, l.pending = l.pending, nil
	if l.inflight != nil && err == nil {
		l.sendLocked()
	}
	l.mu.Unlock()
	close(g.done)
	return true
}

// sendLocked writes the fence of l.inflight on l.conn, with l.mu held. If
// the write fails, it closes the connection, which read notices.
func (l *listener) sendLocked() {
	l.sent.Add(1)
	l.sentAt = lease.Now()
	if _, err := l.conn.Write(fenceMessage); err != nil {
		l.conn.Close()
	}
}

// watch closes the connection when a fence has been in flight for longer
// than l.timeout, until the listener is closed. A deadline on each read
// would do the same at a cost per fence; a tick every tenth of the
// timeout costs nothing per fence.
func (l *listener) watch() {
	defer l.wg.Done()
	t := time.NewTicker(l.timeout / 10)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			conn := l.conn
			stalled := conn != nil && l.inflight != nil && lease.Now()-l.sentAt > int64(l.timeout)
			l.mu.Unlock()
			if stalled {
				l.fail(conn, errFenceTimeout)
			}
		}
	}
}

// fail takes conn down after an error: the cache empties and stops, the
// fences waiting fail, and, unless the listener is closed, a goroutine
// reconnects.
func (l *listener) fail(conn net.Conn, err error) {
	conn.Close()
	l.mu.Lock()
	if l.conn != conn {
		l.mu.Unlock()
		return
	}
	l.cache.reset(false)
	// The lease would stay sound: the cache is emptied and refuses
	// reads that began before, so what it holds later was read after
	// every fence the lease rests on was answered, and the reconnect's
	// backoff outlasts lease.Read. Ending it keeps the argument to the
	// connection that fills the cache, at the cost of one fence.
	l.lease.End()
	l.conn = nil
	groups := []*fenceGroup{l.inflight, l.pending}
	l.inflight, l.pending = nil, nil
	closed := l.closed
	if !closed {
		l.wg.Add(1)
	}
	l.mu.Unlock()
	for _, g := range groups {
		if g != nil {
			g.err = fmt.Errorf("%w: %w", errListenerDown, err)
			close(g.done)
		}
	}
	if !closed {
		go l.reconnect()
	}
}

// reconnect connects again, with backoff, until it succeeds or the
// listener is closed.
func (l *listener) reconnect() {
	defer l.wg.Done()
	wait := 50 * time.Millisecond
	for {
		select {
		case <-l.stop:
			return
		case <-time.After(wait):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := l.connect(ctx)
		cancel()
		if err == nil {
			return
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// fence returns once the cache has applied the notifications of the
// changes a lookup that calls it must see, with the database's clock (µs
// since the Unix epoch) to tell expired sessions by.
//
// A call that begins within lease.Read of the sending of the latest
// answered fence returns at once: a change that returned before the call
// was committed before that fence was sent (package lease), and its
// notification came before that fence's reply. The clock is then the
// latest answered fence's (now() in its transaction, which began after
// the fence was sent) plus the time since it was sent, by the monotonic
// clock: never behind the database's clock when the call began, so no
// session is served past its deadline; at worst one is read from the
// database a round trip before it. Once less than half the lease is
// left, such a call also sends a fence, unless one is in flight, and does
// not wait for it.
//
// Any other call waits for a fence sent after it was called, and the
// clock is the database's when that fence ran. It fails if the listener
// is down or goes down first, and if ctx has ended when the fence
// returns. It does not watch ctx meanwhile, which would cost a context
// with a deadline a timer (Done): a fence returns or fails within
// l.timeout. Concurrent calls share fences: a call joins the group that
// waits for the next fence, never the one in flight, which may have been
// sent before the call.
func (l *listener) fence(ctx context.Context) (int64, error) {
	start := lease.Now()
	if !l.noLease {
		if covered, due := l.lease.Covers(start); covered {
			// Ceiling, so that the estimate never falls short.
			at := (l.clock.Load() + start + 999) / 1000
			if due {
				l.renew()
			}
			return at, nil
		}
	}
	l.mu.Lock()
	if l.conn == nil {
		l.mu.Unlock()
		return 0, errListenerDown
	}
	var g *fenceGroup
	if l.inflight == nil {
		g = &fenceGroup{done: make(chan struct{})}
		l.inflight = g
		l.sendLocked()
	} else {
		if l.pending == nil {
			l.pending = &fenceGroup{done: make(chan struct{})}
		}
		g = l.pending
	}
	l.mu.Unlock()
	<-g.done
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return g.at, g.err
}

// renew sends a fence that nobody waits for, unless one is in flight or
// the listener is down: its reply extends the lease.
func (l *listener) renew() {
	l.mu.Lock()
	if l.conn != nil && l.inflight == nil {
		l.inflight = &fenceGroup{done: make(chan struct{})}
		l.sendLocked()
	}
	l.mu.Unlock()
}

// close stops the listener and waits for its goroutines.
func (l *listener) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	conn := l.conn
	close(l.stop)
	l.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
	l.wg.Wait()
}

// backendPID returns the process ID of the listening connection's
// backend, 0 while it is down.
func (l *listener) backendPID() uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return 0
	}
	return l.pid
}
