package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sessiond/sessiond/app"
)

// statusOf is the one table from error code to HTTP status. A code
// missing from it is answered 500 (see status), never a panic.
var statusOf = map[app.Code]int{
	app.CodeBadRequest:           http.StatusBadRequest,
	app.CodeInvalid:              http.StatusBadRequest,
	app.CodeUnauthenticated:      http.StatusUnauthorized,
	app.CodeBadCredentials:       http.StatusUnauthorized,
	app.CodeWrongPassword:        http.StatusForbidden,
	app.CodeWrongCode:            http.StatusUnauthorized,
	app.CodeForbidden:            http.StatusForbidden,
	app.CodeCrossOrigin:          http.StatusForbidden,
	app.CodeAccountDisabled:      http.StatusForbidden,
	app.CodeNotFound:             http.StatusNotFound,
	app.CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	app.CodeConflict:             http.StatusConflict,
	app.CodeLastAdmin:            http.StatusConflict,
	app.CodeTooManySessions:      http.StatusConflict,
	app.CodeTooLarge:             http.StatusRequestEntityTooLarge,
	app.CodeUnsupportedMedia:     http.StatusUnsupportedMediaType,
	app.CodeRateLimited:          http.StatusTooManyRequests,
	app.CodeStoreUnavailable:     http.StatusServiceUnavailable,
	app.CodeBusy:                 http.StatusServiceUnavailable,
	app.CodeInternal:             http.StatusInternalServerError,
	app.CodeUpstreamUnavailable:  http.StatusBadGateway,
	app.CodeSecondFactorRequired: http.StatusUnauthorized,
	app.CodeReauthRequired:       http.StatusUnauthorized,
}

// status is the HTTP status of code: 500 for a code the table lacks.
func status(code app.Code) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Errors the transport itself raises.
var (
	errUnauthenticated = app.Errorf(app.CodeUnauthenticated, "Sign in to continue.")
	errCrossOrigin     = app.Errorf(app.CodeCrossOrigin, "This request was sent from another site, so it was refused. Nothing was changed.")
	errBackend         = app.Errorf(app.CodeStoreUnavailable, "A backend is unavailable; try again shortly.")
)

// clientError maps err to what a client may see (app.ErrorOf). An error
// that is not for clients is a backend failure: it is logged and counted,
// and the client gets a 503 without detail (fail closed). If the client
// has gone away first, that is what ended the request, not the backend:
// it is logged at level debug only.
func (s *Server) clientError(r *http.Request, err error) *app.Error {
	if e := app.ErrorOf(err); e != nil {
		return e
	}
	if r.Context().Err() != nil {
		s.log.DebugContext(r.Context(), "request ended before it was answered", "method", r.Method, "path", logPath(r), "err", err)
	} else {
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", logPath(r), "err", err)
		s.metrics.storeErrors.Inc()
	}
	return errBackend
}

// logPath is r's path as logged: its first 256 bytes, so that a client
// cannot fill the log with one request.
func logPath(r *http.Request) string {
	p := r.URL.Path
	if len(p) > 256 {
		p = strings.ToValidUTF8(p[:256], "") + "…"
	}
	return p
}

// writeErr answers with err as JSON {"error":{"code","message"}} (see
// clientError), with Retry-After for a rate limit.
func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	writeError(w, s.clientError(r, err))
}

// writeError is the one writer of the JSON error shape.
func writeError(w http.ResponseWriter, e *app.Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	setRetryAfter(h, e.RetryAfter)
	w.WriteHeader(status(e.Code))
	var body struct {
		Error struct {
			Code    app.Code `json:"code"`
			Message string   `json:"message"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message = e.Code, e.Message
	json.NewEncoder(w).Encode(body)
}

// setRetryAfter sets Retry-After to wait in whole seconds, rounded up, if
// wait is positive.
func setRetryAfter(h http.Header, wait time.Duration) {
	if wait > 0 {
		h.Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
	}
}
