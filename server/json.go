package server

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// maxBody bounds request bodies: every body sessiond accepts is a small
// JSON object or form.
const maxBody = 64 << 10

var errTooLarge = app.Errorf(app.CodeTooLarge, "The request body is too large.")

// decodeJSON reads r's body into v: 415 unless it is JSON, 413 above
// maxBody, 400 if malformed or with unknown fields.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if !isJSON(r) {
		return app.Errorf(app.CodeUnsupportedMedia, "Send Content-Type: application/json.")
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errTooLarge
		}
		return app.Errorf(app.CodeBadRequest, "The request body is not the expected JSON object.")
	}
	if _, err := dec.Token(); err != io.EOF {
		return app.Errorf(app.CodeBadRequest, "The request body holds more than one JSON value.")
	}
	return nil
}

func isJSON(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/json"
}

func isForm(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/x-www-form-urlencoded"
}

// writeJSON answers status with v as JSON. Every API response may carry
// personal data, so none is cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// sessionView is a session as the API shows it.
type sessionView struct {
	ID              string    `json:"id"`
	UserID          string    `json:"user_id"`
	CreatedAt       time.Time `json:"created_at"`
	AuthenticatedAt time.Time `json:"authenticated_at"`
	AMR             []string  `json:"amr"`
	AAL             int       `json:"aal"`
	LastSeenAt      time.Time `json:"last_seen_at"`
	ExpiresAt       time.Time `json:"expires_at"`
	IdleExpiresAt   time.Time `json:"idle_expires_at"`
	IP              string    `json:"ip"`
	UserAgent       string    `json:"user_agent"`
	Current         bool      `json:"current"`
}

func viewSession(s *session.Session, currentID string) sessionView {
	utc := func(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }
	amr := s.AMR
	if amr == nil {
		amr = []string{}
	}
	return sessionView{
		ID: s.ID, UserID: s.UserID,
		CreatedAt: utc(s.CreatedAt), AuthenticatedAt: utc(s.AuthenticatedAt), LastSeenAt: utc(s.LastSeenAt),
		AMR: amr, AAL: s.AAL(),
		ExpiresAt: utc(s.AbsoluteDeadline), IdleExpiresAt: utc(s.IdleDeadline),
		IP: s.LastIP, UserAgent: s.LastUserAgent, Current: s.ID == currentID,
	}
}

func viewSessions(list []*session.Session, currentID string) map[string][]sessionView {
	out := make([]sessionView, 0, len(list))
	for _, s := range list {
		out = append(out, viewSession(s, currentID))
	}
	return map[string][]sessionView{"sessions": out}
}

// userView is a user as the API shows it: never the password hash. The
// admin's views add what second factors the user has.
type userView struct {
	ID            string       `json:"id"`
	Username      string       `json:"username"`
	Roles         []string     `json:"roles"`
	Disabled      bool         `json:"disabled"`
	SecondFactors *factorsView `json:"second_factors,omitempty"`
}

func viewUser(u *users.User) userView {
	roles := u.Roles
	if roles == nil {
		roles = []string{}
	}
	return userView{ID: u.ID, Username: u.Username, Roles: roles, Disabled: u.Disabled}
}

// wantsHTML reports whether r comes from a browser navigating, rather than
// from a script or API client.
func wantsHTML(r *http.Request) bool {
	return r.Header.Get("Sec-Fetch-Mode") == "navigate" || strings.Contains(r.Header.Get("Accept"), "text/html")
}
