package webhook

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is how a Dispatcher delivers. Zero fields take the defaults
// stated.
type Config struct {
	// Hooks are the endpoints; every event goes to each.
	Hooks []Hook
	// Outbox keeps the deliveries; required.
	Outbox Outbox
	// Client sends the requests. Default: a client with a 10 s timeout
	// per attempt that follows no redirect (a 3xx is a failed attempt).
	Client *http.Client
	// MaxAttempts is how many attempts a delivery gets before it becomes
	// a dead letter. Default 15 (with the default backoff, about a day).
	MaxAttempts int
	// MaxAge is how long after its event a delivery may be retried before
	// it becomes a dead letter. Default 72h.
	MaxAge time.Duration
	// MinBackoff and MaxBackoff bound the wait before a retry: attempt n
	// waits MinBackoff·2^(n-1), at most MaxBackoff, less a random part of
	// up to half of it (jitter), so that many deliveries failed at once
	// do not come back at once. Defaults 5s and 1h.
	MinBackoff, MaxBackoff time.Duration
	// Poll is how often the outbox is read for due deliveries when there
	// was nothing to do. Default 1s.
	Poll time.Duration
	// Lease is how long a claimed delivery is the claimer's: past it,
	// another instance may claim it again (after a crash). It must exceed
	// the client's timeout. Default 1 min.
	Lease time.Duration
	// Batch is the most deliveries claimed at once, sent in parallel.
	// Default 16.
	Batch int
	// Logger receives a line per failed attempt; nil discards them.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// maxResponse is the most of a response body read (and dropped), so that
// the connection can be reused; a receiver sending more costs no more.
const maxResponse = 64 << 10

// maxErrorLen bounds the error text kept per hook and delivery.
const maxErrorLen = 256

func (c Config) withDefaults() Config {
	if c.Client == nil {
		c.Client = &http.Client{
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 15
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 72 * time.Hour
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 5 * time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = time.Hour
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.Lease <= 0 {
		c.Lease = time.Minute
	}
	if c.Batch <= 0 {
		c.Batch = 16
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Dispatcher delivers the outbox's events to the hooks: at least once,
// each delivery attempted by one instance at a time however many share
// the outbox, retried with backoff until it succeeds or becomes a dead
// letter. Deliveries to one hook may arrive in any order.
type Dispatcher struct {
	cfg   Config
	owner string
	ids   []string
	hooks map[string]Hook
	wake  chan struct{}
	// refreshed is when Run last set the gauges, and stale says a round
	// has run since. While busy, Run sets them at most once a second
	// (Stats reads the whole outbox), and again once idle. Only Run's
	// goroutine uses them.
	refreshed time.Time
	stale     bool

	deliveries *prometheus.CounterVec
	backlog    *prometheus.GaugeVec
	dead       *prometheus.GaugeVec
}

// The outcome label values of sessiond_webhook_deliveries_total.
const (
	OutcomeDelivered = "delivered"
	OutcomeFailed    = "failed"
	OutcomeDead      = "dead"
)

// New returns a Dispatcher for cfg; call Run to start it.
func New(cfg Config) (*Dispatcher, error) {
	cfg = cfg.withDefaults()
	if cfg.Outbox == nil {
		return nil, errors.New("webhook: no outbox")
	}
	if cfg.Lease <= cfg.Client.Timeout {
		return nil, fmt.Errorf("webhook: the lease (%v) must exceed the client's timeout (%v)", cfg.Lease, cfg.Client.Timeout)
	}
	d := &Dispatcher{cfg: cfg, owner: crand.Text(), hooks: map[string]Hook{}, wake: make(chan struct{}, 1),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiond_webhook_deliveries_total",
			Help: "Webhook delivery attempts by hook ID and outcome: delivered (2xx), failed (to be retried), dead (given up: a dead letter).",
		}, []string{"hook", "outcome"}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sessiond_webhook_backlog",
			Help: "Webhook deliveries not yet made (due or waiting to retry), by hook ID.",
		}, []string{"hook"}),
		dead: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sessiond_webhook_dead_letters",
			Help: "Webhook deliveries given up on, by hook ID; retry them from the admin console or POST /api/v1/admin/webhooks/{hook}/retry.",
		}, []string{"hook"}),
	}
	for _, h := range cfg.Hooks {
		if _, dup := d.hooks[h.ID]; dup {
			return nil, fmt.Errorf("webhook: %s is configured twice", Redact(h.URL))
		}
		d.hooks[h.ID] = h
		d.ids = append(d.ids, h.ID)
		for _, o := range []string{OutcomeDelivered, OutcomeFailed, OutcomeDead} {
			d.deliveries.WithLabelValues(h.ID, o)
		}
		d.backlog.WithLabelValues(h.ID)
		d.dead.WithLabelValues(h.ID)
	}
	return d, nil
}

// Collectors returns the Dispatcher's metrics, each series of a hook at 0
// from the start.
func (d *Dispatcher) Collectors() []prometheus.Collector {
	return []prometheus.Collector{d.deliveries, d.backlog, d.dead}
}

// Hooks returns the configured hooks.
func (d *Dispatcher) Hooks() []Hook { return slices.Clone(d.cfg.Hooks) }

// Notify tells the Dispatcher that events may be waiting, so that it
// reads the outbox without waiting for the next poll. It never blocks.
func (d *Dispatcher) Notify() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx is done, then returns once the deliveries in
// flight have finished (each bounded by the client's timeout). It registers the hooks with the outbox
// first (see Outbox.SetHooks) and fails only if that fails; a failure to
// read the outbox later is logged and retried at the next poll.
func (d *Dispatcher) Run(ctx context.Context) error {
	if err := d.cfg.Outbox.SetHooks(ctx, d.ids); err != nil {
		return err
	}
	if len(d.ids) == 0 {
		return nil
	}
	stats := time.NewTicker(15 * time.Second)
	defer stats.Stop()
	d.refreshStats(ctx)
	for {
		n, err := d.round(ctx)
		if err != nil && ctx.Err() == nil {
			d.cfg.Logger.ErrorContext(ctx, "webhook outbox read failed", "err", err)
		}
		if n == d.cfg.Batch && err == nil {
			continue // more may be due
		}
		if d.stale {
			d.refresh(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		case <-stats.C:
			d.refreshStats(ctx)
		case <-time.After(d.cfg.Poll):
		}
	}
}

// round claims a batch of due deliveries, sends them in parallel, records
// the outcomes, and returns how many it claimed.
func (d *Dispatcher) round(ctx context.Context) (int, error) {
	batch, err := d.cfg.Outbox.Claim(ctx, d.owner, d.ids, d.cfg.Now(), d.cfg.Lease, d.cfg.Batch)
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	// Deliveries begun finish, each within the client's timeout, and
	// record their outcome even if ctx ends meanwhile: a delivery cut
	// off would wait for its lease to end before anyone retried it.
	sendCtx := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for _, del := range batch {
		wg.Go(func() { d.deliver(sendCtx, del) })
	}
	wg.Wait()
	d.stale = true
	if time.Since(d.refreshed) >= time.Second {
		d.refresh(ctx)
	}
	return len(batch), nil
}

// deliver makes one attempt of del and records its outcome.
func (d *Dispatcher) deliver(ctx context.Context, del Delivery) {
	h, ok := d.hooks[del.HookID]
	if !ok { // not claimed: Claim is asked for d.ids only
		return
	}
	var err error
	if del.Missing {
		err = errors.New("the event is no longer in the audit log")
	} else {
		err = d.send(ctx, h, del)
	}
	now := d.cfg.Now()
	if err == nil {
		d.deliveries.WithLabelValues(h.ID, OutcomeDelivered).Inc()
		if err := d.cfg.Outbox.Delivered(ctx, d.owner, del); err != nil {
			d.cfg.Logger.ErrorContext(ctx, "webhook outbox write failed", "hook", h.ID, "err", err)
		}
		return
	}
	msg := bound(err.Error())
	dead := del.Missing || del.Attempts >= d.cfg.MaxAttempts || now.Sub(del.Since) >= d.cfg.MaxAge
	outcome := OutcomeFailed
	if dead {
		outcome = OutcomeDead
	}
	d.deliveries.WithLabelValues(h.ID, outcome).Inc()
	d.cfg.Logger.WarnContext(ctx, "webhook delivery failed", "hook", h.ID, "url", Redact(h.URL), "event_id", del.Event.ID,
		"attempt", del.Attempts, "dead", dead, "err", msg)
	if err := d.cfg.Outbox.Failed(ctx, d.owner, del, now, now.Add(d.backoff(del.Attempts)), dead, msg); err != nil {
		d.cfg.Logger.ErrorContext(ctx, "webhook outbox write failed", "hook", h.ID, "err", err)
	}
}

// backoff is the wait after the attempt-th failed attempt: exponential,
// capped, with up to half of it taken off at random.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	b := d.cfg.MaxBackoff
	if attempt <= 30 {
		b = min(d.cfg.MinBackoff<<(max(attempt, 1)-1), d.cfg.MaxBackoff)
	}
	if b <= 0 {
		b = d.cfg.MaxBackoff
	}
	return b - rand.N(b/2+1)
}

// send POSTs del's event to h, signed, and fails unless the answer is 2xx.
func (d *Dispatcher) send(ctx context.Context, h Hook, del Delivery) error {
	body, err := Body(del.Event)
	if err != nil {
		return err
	}
	id, ts := MessageID(del.Event.ID), d.cfg.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sessiond-webhooks")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", Sign(h.Key, id, ts, body))
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		return redactErr(err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	return nil
}

// redactErr words a failed request without the hook's URL, which may
// hold credentials (the hook is named by ID beside it).
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// bound cuts an error text to maxErrorLen bytes.
func bound(s string) string {
	if len(s) > maxErrorLen {
		return s[:maxErrorLen]
	}
	return s
}

// refresh sets the gauges and notes when.
func (d *Dispatcher) refresh(ctx context.Context) {
	d.refreshed, d.stale = time.Now(), false
	d.refreshStats(ctx)
}

// refreshStats sets the backlog and dead-letter gauges from the outbox.
func (d *Dispatcher) refreshStats(ctx context.Context) {
	st, err := d.cfg.Outbox.Stats(ctx)
	if err != nil {
		return
	}
	for _, id := range d.ids {
		d.backlog.WithLabelValues(id).Set(float64(st[id].Pending))
		d.dead.WithLabelValues(id).Set(float64(st[id].Dead))
	}
}

// HookStatus is one hook's state for the admin view.
type HookStatus struct {
	ID string `json:"id"`
	// URL is the hook's URL with any user-info redacted.
	URL     string `json:"url"`
	Pending int    `json:"pending"`
	Dead    int    `json:"dead_letters"`
	// FailingSince is when the current run of failures began; nil if
	// the last attempt succeeded.
	FailingSince *time.Time `json:"failing_since"`
	LastError    string     `json:"last_error,omitempty"`
}

// Status returns the state of each configured hook, in configuration
// order.
func (d *Dispatcher) Status(ctx context.Context) ([]HookStatus, error) {
	st, err := d.cfg.Outbox.Stats(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]HookStatus, 0, len(d.ids))
	for _, id := range d.ids {
		s := st[id]
		hs := HookStatus{ID: id, URL: Redact(d.hooks[id].URL), Pending: s.Pending, Dead: s.Dead, LastError: s.LastError}
		if !s.FailingSince.IsZero() {
			t := s.FailingSince.UTC()
			hs.FailingSince = &t
		}
		out = append(out, hs)
	}
	return out, nil
}

// ErrUnknownHook is returned by Retry for an ID no configured hook has.
var ErrUnknownHook = errors.New("webhook: no such hook")

// Retry makes hook id's dead letters due again, with a fresh count of
// attempts, and returns how many.
func (d *Dispatcher) Retry(ctx context.Context, id string) (int, error) {
	if _, ok := d.hooks[id]; !ok {
		return 0, ErrUnknownHook
	}
	n, err := d.cfg.Outbox.Retry(ctx, id, d.cfg.Now())
	if err == nil {
		d.Notify()
		d.refreshStats(ctx)
	}
	return n, err
}
