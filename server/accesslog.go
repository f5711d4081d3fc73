package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// The access log: one line per request, with the message "request" and
// the attributes
//
//	method      the request method (its first 32 bytes)
//	route       the pattern that matched, or routeUpstream, or routeOther
//	            (never the raw path, which a client chooses)
//	status      the HTTP status answered
//	duration    the time to answer
//	ip          the client IP (Server.clientIP)
//	user_id     the user, once the request is authenticated
//	session_id  the public session ID, likewise
//
// An attribute without a value is left out. No line holds a token, a
// cookie, a password or an Authorization header: the line is built from
// the fields above only. The level is debug for the 2xx answers of the
// internal endpoints (forward-auth checks, health probes, scrapes), which
// come at the rate of the traffic or of the monitoring, and info for every
// other answer, 4xx and 5xx included. The same observation feeds
// sessiond_http_requests_total and sessiond_http_request_duration_seconds.

// observed is the ResponseWriter observe hands on: it records the status,
// and the handlers record who the request comes from (noteSession).
type observed struct {
	http.ResponseWriter
	status            int
	userID, sessionID string
}

type observedKey struct{}

func (o *observed) WriteHeader(status int) {
	if o.status == 0 && (status >= 200 || status == http.StatusSwitchingProtocols) {
		o.status = status
	}
	o.ResponseWriter.WriteHeader(status)
}

func (o *observed) Write(b []byte) (int, error) {
	if o.status == 0 {
		o.status = http.StatusOK
	}
	return o.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (flushes, deadlines, hijacking for
// a protocol switch) reach the connection's writer.
func (o *observed) Unwrap() http.ResponseWriter { return o.ResponseWriter }

// noteSession records, for the access log line of the request ctx
// belongs to, the user and public session ID it comes with. Outside
// observe it does nothing.
func noteSession(ctx context.Context, userID, sessionID string) {
	if o, _ := ctx.Value(observedKey{}).(*observed); o != nil {
		o.userID, o.sessionID = userID, sessionID
	}
}

// observe serves r with next, then writes its access log line and counts
// it in the HTTP metrics. The route is route if not "", else the pattern
// of the mux in next that matched (Request.Pattern), else routeOther.
func (s *Server) observe(next http.Handler, route string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		o := &observed{ResponseWriter: w}
		r = r.WithContext(context.WithValue(r.Context(), observedKey{}, o))
		next.ServeHTTP(o, r)
		rt := route
		if rt == "" {
			rt = r.Pattern // set on r by the mux that matched it
		}
		s.answered(r, rt, o.status, time.Since(start), o.userID, o.sessionID)
	})
}

// answered logs and counts a request of route answered with status
// (0: 200) after d.
func (s *Server) answered(r *http.Request, route string, status int, d time.Duration, userID, sessionID string) {
	if status == 0 {
		status = http.StatusOK
	}
	rm := s.metrics.route(route)
	s.metrics.observe(rm, status, d)
	s.logAccess(r, rm.route, status, d, userID, sessionID)
}

// logAccess writes the access log line of r. It builds the line only if
// its level is enabled.
func (s *Server) logAccess(r *http.Request, route string, status int, d time.Duration, userID, sessionID string) {
	level := slog.LevelInfo
	if status < 300 && internalRoute(route) {
		level = slog.LevelDebug
	}
	ctx := r.Context()
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := [7]slog.Attr{
		slog.String("method", logMethod(r.Method)),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Duration("duration", d),
	}
	n := 4
	for _, a := range [...]slog.Attr{slog.String("ip", s.clientIP(r)), slog.String("user_id", userID), slog.String("session_id", sessionID)} {
		if a.Value.String() != "" {
			attrs[n] = a
			n++
		}
	}
	s.log.LogAttrs(ctx, level, "request", attrs[:n]...)
}

// internalRoute reports whether route is one of the internal endpoints'.
func internalRoute(route string) bool {
	switch route {
	case "/resolve", "/resolve/", "GET /healthz", "GET /readyz", "GET /metrics", routeExtAuthz:
		return true
	}
	return false
}

// logMethod is method as logged: its first 32 bytes, so that a client
// cannot fill the log with one request.
func logMethod(method string) string {
	if len(method) > 32 {
		method = strings.ToValidUTF8(method[:32], "") + "…"
	}
	return method
}

// routeMux is a ServeMux that keeps the patterns registered on it, the
// route labels of the HTTP metrics.
type routeMux struct {
	*http.ServeMux
	patterns *[]string
}

func (m routeMux) Handle(pattern string, h http.Handler) {
	*m.patterns = append(*m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}
