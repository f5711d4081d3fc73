package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the Prometheus metrics served at /metrics.
type metrics struct {
	reg             *prometheus.Registry
	sessionEvents   *prometheus.CounterVec
	resolves        *prometheus.CounterVec
	resolvedOK      prometheus.Counter // resolves{outcome="ok"}, looked up once
	resolveDuration prometheus.Histogram
	loginFailures   *prometheus.CounterVec
	storeErrors     prometheus.Counter
	rateLimited     *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		sessionEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiond_session_events_total",
			Help: "Session lifecycle events by type (created, rotated, revoked, expired, theft_suspected, invalid).",
		}, []string{"type"}),
		resolves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiond_resolve_total",
			Help: "Resolve (forward-auth) answers by outcome: ok, unauthenticated, rate_limited, store_unavailable, canceled (the client went away first).",
		}, []string{"outcome"}),
		resolveDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sessiond_resolve_duration_seconds",
			Help:    "Time to answer a resolve request.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, .5},
		}),
		loginFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiond_login_failures_total",
			Help: "Failed logins by reason: bad_credentials, disabled, rate_limited, busy.",
		}, []string{"reason"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessiond_store_errors_total",
			Help: "Requests that failed because a store (sessions, users, audit) did not answer.",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiond_rate_limited_total",
			Help: "Requests refused with 429, by limit: login_ip, login_account, invalid_token.",
		}, []string{"limit"}),
	}
	m.resolvedOK = m.resolves.WithLabelValues("ok")
	m.reg.MustRegister(m.sessionEvents, m.resolves, m.resolveDuration, m.loginFailures, m.storeErrors, m.rateLimited,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
