package server

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// Error is an error a client may see: a stable code, a short message, and
// the HTTP status that goes with the code. Anything else that reaches
// writeErr is logged and answered with a generic 500 or 503, so internals
// never reach a client.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// statusOf is the one table from error code to HTTP status.
var statusOf = map[string]int{
	"bad_request":           http.StatusBadRequest,
	"invalid":               http.StatusBadRequest,
	"unauthenticated":       http.StatusUnauthorized,
	"bad_credentials":       http.StatusUnauthorized,
	"wrong_password":        http.StatusForbidden,
	"forbidden":             http.StatusForbidden,
	"cross_origin":          http.StatusForbidden,
	"account_disabled":      http.StatusForbidden,
	"not_found":             http.StatusNotFound,
	"method_not_allowed":    http.StatusMethodNotAllowed,
	"conflict":              http.StatusConflict,
	"too_large":             http.StatusRequestEntityTooLarge,
	"unsupported_media":     http.StatusUnsupportedMediaType,
	"rate_limited":          http.StatusTooManyRequests,
	"too_many_sessions":     http.StatusConflict,
	"store_unavailable":     http.StatusServiceUnavailable,
	"busy":                  http.StatusServiceUnavailable,
	"internal":              http.StatusInternalServerError,
	"bad_gateway":           http.StatusBadGateway,
	"upstream_unavailable":  http.StatusBadGateway,
	"unsupported_transport": http.StatusBadRequest,
}

func errorf(code, message string) *Error { return &Error{Code: code, Message: message} }

// errCrossOrigin answers a state change sent from another site.
var errCrossOrigin = errorf("cross_origin", "This request was sent from another site, so it was refused. Nothing was changed.")

// toError maps err to what a client may see.
func toError(err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, users.ErrBadCredentials):
		return errorf("bad_credentials", "Wrong username or password.")
	case errors.Is(err, users.ErrDisabled):
		return errorf("account_disabled", "This account is disabled.")
	case errors.Is(err, users.ErrExists):
		return errorf("conflict", "That username is taken.")
	case errors.Is(err, users.ErrNotFound):
		return errorf("not_found", "No such user.")
	case errors.Is(err, users.ErrInvalid):
		return errorf("invalid", err.Error()[len("users: invalid: "):])
	case errors.Is(err, users.ErrBusy):
		return errorf("busy", "Too many sign-ins in progress; try again shortly.")
	case errors.Is(err, session.ErrNotFound):
		return errorf("not_found", "No such session.")
	case errors.Is(err, session.ErrTooManySessions):
		return errorf("too_many_sessions", "Too many active sessions; sign out elsewhere first.")
	case errors.Is(err, session.ErrCrossOrigin):
		return errCrossOrigin
	case errors.Is(err, session.ErrConflict):
		return errorf("conflict", "The session changed concurrently; try again.")
	}
	return nil
}

// clientError maps err to what a client may see. An error that is not for
// clients is a backend failure: it is logged and counted, and the client
// gets a 503 without detail (fail closed). If the client has gone away
// first, that is what ended the request, not the backend: it is logged at
// level debug only.
func (s *Server) clientError(r *http.Request, err error) *Error {
	if e := toError(err); e != nil {
		return e
	}
	if r.Context().Err() != nil {
		s.log.DebugContext(r.Context(), "request ended before it was answered", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		s.metrics.storeErrors.Inc()
	}
	return errorf("store_unavailable", "A backend is unavailable; try again shortly.")
}

// writeErr answers with err as JSON {"error":{"code","message"}} (see
// clientError).
func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	e := s.clientError(r, err)
	writeJSONError(w, statusOf[e.Code], e)
}

func writeJSONError(w http.ResponseWriter, status int, e *Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": e.Code, "message": e.Message}})
}
