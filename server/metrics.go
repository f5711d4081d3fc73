package server

import (
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/session"
)

// The route label of requests no mux pattern names: those no route
// matches (404, 405) or that the mux redirects, and with Config.Upstream
// those proxied to the app.
const (
	routeOther    = "other"
	routeUpstream = "upstream"
)

// statusClasses are the values of the code label of
// sessiond_http_requests_total, each series of which exists from the
// start. A 1xx final status (a protocol switch proxied to the app) gets
// its series when it first occurs.
var statusClasses = [...]string{"2xx", "3xx", "4xx", "5xx"}

// The label values of the labelled counters, each series of which exists
// from the start, so that a rate over it is defined before the first
// event.
var (
	sessionEventTypes = []session.EventType{session.EventCreated, session.EventRotated, session.EventExtended, session.EventRevoked, session.EventExpired, session.EventTheftSuspected, session.EventInvalid}
	resolveOutcomes   = []string{"ok", "unauthenticated", "second_factor_required", "reauth_required", "forbidden", "bad_policy", "bad_host", "rate_limited", "store_unavailable", "canceled"}
	loginFailReasons  = []string{audit.ReasonBadCredentials, audit.ReasonDisabled, audit.ReasonRateLimited, audit.ReasonBusy}
	rateLimits        = []string{"login", "invalid_token"}
)

// metrics are the Prometheus metrics served at /metrics. Every series
// whose labels can be known in advance exists, at 0, from the start.
type metrics struct {
	reg             *prometheus.Registry
	sessionEvents   *prometheus.CounterVec
	resolves        *prometheus.CounterVec
	resolvedOK      prometheus.Counter // resolves{outcome="ok"}, looked up once
	resolveDuration prometheus.Histogram
	loginFailures   *prometheus.CounterVec
	logins          prometheus.Counter
	storeErrors     prometheus.Counter
	rateLimited     *prometheus.CounterVec
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	// routes holds each route's series, looked up once (see initRoutes);
	// it is not written after New, so requests read it without a lock.
	routes map[string]*routeMetrics
	// resolveRoute is routes["/resolve"], for resolveObserved.
	resolveRoute *routeMetrics
}

// routeMetrics are the HTTP series of one route label.
type routeMetrics struct {
	route    string
	byClass  [len(statusClasses)]prometheus.Counter
	duration prometheus.Observer
}

// newMetrics returns the metrics, sessiond_build_info reporting version.
func newMetrics(version string) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		sessionEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiond_session_events_total",
			Help: "Session lifecycle events by type (created, rotated, extended, revoked, expired, theft_suspected, invalid).",
		}, []string{"type"}),
		resolves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiond_resolve_total",
			Help: "Resolve (forward-auth) answers by outcome: ok, unauthenticated, second_factor_required and reauth_required (the route's policy asks for more), forbidden (the user lacks the route's role), bad_policy (the proxy's policy query is wrong), bad_host (with --assertion, the original host is not a host name), rate_limited, store_unavailable, canceled (the client went away first).",
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
		logins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessiond_logins_total",
			Help: "Successful logins (POST /login and POST /api/v1/tokens): sessions started with a password.",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessiond_store_errors_total",
			Help: "Requests that failed because a store (sessions, users, audit) did not answer.",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiond_rate_limited_total",
			Help: "Requests refused with 429, by limit: login (the sign-in throttle), invalid_token.",
		}, []string{"limit"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiond_http_requests_total",
			Help: `HTTP requests answered, by route (the pattern that matched, "upstream" for the app behind --upstream, "other" for none) and status class (2xx, 3xx, 4xx, 5xx).`,
		}, []string{"route", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sessiond_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route (as in sessiond_http_requests_total).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sessiond_build_info",
		Help: "Always 1; its labels are the version of sessiond and of Go it was built with.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)

	for _, t := range sessionEventTypes {
		m.sessionEvents.WithLabelValues(sessionEventLabel(t))
	}
	for _, o := range resolveOutcomes {
		m.resolves.WithLabelValues(o)
	}
	for _, r := range loginFailReasons {
		m.loginFailures.WithLabelValues(r)
	}
	for _, l := range rateLimits {
		m.rateLimited.WithLabelValues(l)
	}
	m.resolvedOK = m.resolves.WithLabelValues("ok")
	m.reg.MustRegister(m.sessionEvents, m.resolves, m.resolveDuration, m.loginFailures, m.logins, m.storeErrors, m.rateLimited,
		m.requests, m.requestDuration, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// sessionEventLabel is the type label of a session event: its type without the
// "session." prefix.
func sessionEventLabel(t session.EventType) string {
	return strings.TrimPrefix(string(t), "session.")
}

// initRoutes creates the HTTP series of routes and of routeOther, each
// at 0. It must be called before the server answers its first request.
func (m *metrics) initRoutes(routes []string) {
	m.routes = map[string]*routeMetrics{}
	for _, route := range append(slices.Clone(routes), routeOther) {
		rm := &routeMetrics{route: route, duration: m.requestDuration.WithLabelValues(route)}
		for i, class := range statusClasses {
			rm.byClass[i] = m.requests.WithLabelValues(route, class)
		}
		m.routes[route] = rm
	}
	m.resolveRoute = m.route("/resolve")
}

// route returns the series of route, those of routeOther for a route
// initRoutes did not create.
func (m *metrics) route(route string) *routeMetrics {
	if rm, ok := m.routes[route]; ok {
		return rm
	}
	return m.routes[routeOther]
}

// observe counts a request of route answered with status after d.
func (m *metrics) observe(rm *routeMetrics, status int, d time.Duration) {
	rm.duration.Observe(d.Seconds())
	if i := status/100 - 2; i >= 0 && i < len(rm.byClass) {
		rm.byClass[i].Inc()
		return
	}
	m.requests.WithLabelValues(rm.route, statusClass(status)).Inc()
}

// statusClass is the class of an HTTP status: "2xx" for 200 to 299, and
// so on.
func statusClass(status int) string {
	return string(rune('0'+status/100%10)) + "xx"
}
