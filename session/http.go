package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// ErrCrossOrigin is returned by Login and Logout for a cross-origin browser
// request: a forged form post from another site.
var ErrCrossOrigin = errors.New("session: cross-origin request refused")

type ctxKey struct{}

// NewContext returns a copy of ctx carrying s, as the middleware does; for
// tests of handlers that read FromContext.
func NewContext(ctx context.Context, s *Session) context.Context {
	return context.WithValue(ctx, ctxKey{}, s)
}

// FromContext returns the session that Manager.Handler loaded for the
// request, or nil if the request carried no valid session.
func FromContext(ctx context.Context) *Session {
	s, _ := ctx.Value(ctxKey{}).(*Session)
	return s
}

// TokenFromRequest returns the token r carries and whether it came from the
// session cookie. It reads an "Authorization: Bearer" header (RFC 6750
// §2.1) first, then the cookie, and nothing else: a token in a URL or form
// field would leak through logs, history and Referer, so it is ignored.
// Only well-formed tokens are returned; it returns "" if there is none.
func (m *Manager) TokenFromRequest(r *http.Request) (token string, fromCookie bool) {
	token, _, fromCookie = m.tokenFromRequest(r)
	return token, fromCookie
}

// tokenFromRequest is TokenFromRequest that also returns the token's hash.
func (m *Manager) tokenFromRequest(r *http.Request) (string, Hash, bool) {
	if tok, h, ok := bearer(r.Header.Get("Authorization")); ok {
		return tok, h, false
	}
	// With several cookies of our name (one planted for a subdomain or a
	// longer path), take the first well-formed one; the __Host- prefix
	// stops such planting altogether.
	for _, line := range r.Header["Cookie"] {
		for part := range strings.SplitSeq(line, ";") {
			name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || name != m.cfg.Cookie.Name {
				continue
			}
			if len(val) > 1 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1] // RFC 6265 allows a quoted value
			}
			if h, err := ParseToken(val); err == nil {
				return val, h, true
			}
		}
	}
	return "", Hash{}, false
}

// bearer returns the token of an "Authorization: Bearer <token>" header
// value and its hash, if it holds a well-formed one. The scheme is
// case-insensitive (RFC 9110 §11.1).
func bearer(header string) (string, Hash, bool) {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", Hash{}, false
	}
	tok = strings.Trim(tok, " ")
	h, err := ParseToken(tok)
	return tok, h, err == nil
}

// ClientOf describes r's client: its IP (per Config.ClientIP) and user
// agent, each cut to 256 bytes so that a client cannot bloat the store.
func (m *Manager) ClientOf(r *http.Request) Client {
	var ip string
	if m.cfg.ClientIP != nil {
		ip = m.cfg.ClientIP(r)
	} else if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		ip = host
	} else {
		ip = r.RemoteAddr
	}
	return Client{IP: truncate(ip, 256), UserAgent: truncate(r.UserAgent(), 256)}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "")
	}
	return s
}

// Load validates the token r carries and returns its session. It returns
// ErrNotFound if r carries no valid token, and another error only if the
// store fails. It does no CSRF check and no periodic rotation; Handler
// does both.
func (m *Manager) Load(r *http.Request) (*Session, error) {
	return m.LoadContext(r.Context(), r)
}

// LoadContext is Load with ctx for the store calls in place of r's
// context: for a caller that bounds them (with a deadline, say) without
// copying r to carry ctx.
func (m *Manager) LoadContext(ctx context.Context, r *http.Request) (*Session, error) {
	token, h, _ := m.tokenFromRequest(r)
	if token == "" {
		return nil, ErrNotFound
	}
	s, _, err := m.validateHash(ctx, h, func() Client { return m.ClientOf(r) })
	return s, err
}

// Handler returns middleware that loads the session r carries into the
// request context (read it with FromContext) and passes every request on,
// with or without a session. For an authenticated request it:
//   - refuses a state-changing cross-origin request authenticated by the
//     cookie with 403 (Config.CrossOrigin);
//   - sets "Cache-Control: no-store" and "Vary: Cookie", so no cache keeps
//     or shares a personal response;
//   - issues a new cookie when periodic rotation is due.
//
// A cookie that names no live session is expired in the browser. If the
// store fails, Handler answers 503 rather than guess: it fails closed.
func (m *Manager) Handler(next http.Handler) http.Handler {
	return m.handler(next, false)
}

// Require is Handler that also answers 401 to requests without a valid
// session.
func (m *Manager) Require(next http.Handler) http.Handler {
	return m.handler(next, true)
}

func (m *Manager) handler(next http.Handler, required bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, hash, fromCookie := m.tokenFromRequest(r)
		var s *Session
		if token != "" {
			var current bool
			var err error
			s, current, err = m.validateHash(r.Context(), hash, func() Client { return m.ClientOf(r) })
			switch {
			case errors.Is(err, ErrNotFound):
				if fromCookie {
					m.clearCookie(w)
				}
			case err != nil:
				m.writeError(w, r, http.StatusServiceUnavailable, "store_unavailable", "The session store is unavailable; try again shortly.")
				return
			case fromCookie:
				if err := m.cfg.CrossOrigin.Check(r); err != nil {
					m.writeError(w, r, http.StatusForbidden, "cross_origin", "Cross-origin request refused.")
					return
				}
				if current {
					if tok := m.rotateIfDue(r.Context(), s); tok != "" {
						m.SetCookie(w, tok, s)
					}
				}
			}
		}
		if s == nil {
			if required {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sessiond"`)
				m.writeError(w, r, http.StatusUnauthorized, "unauthenticated", "Sign in to continue.")
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h["Cache-Control"] = []string{"no-store"}
		if fromCookie {
			h["Vary"] = append(h["Vary"], "Cookie")
		} else {
			h["Vary"] = append(h["Vary"], "Cookie", "Authorization")
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), s)))
	})
}

// Login starts a session for l after the app has checked the user's
// credentials, sets its cookie on w and returns it. It first ends the
// session r already carries, if any: a login always yields a fresh token,
// so a token planted in the browser before login (session fixation, OWASP
// Session Management Cheat Sheet) is worthless. A zero l.Client is filled
// from r. A cross-origin browser request fails with ErrCrossOrigin (login
// CSRF).
func (m *Manager) Login(w http.ResponseWriter, r *http.Request, l Login) (*Session, error) {
	if err := m.cfg.CrossOrigin.Check(r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCrossOrigin, err)
	}
	if l.Client == (Client{}) {
		l.Client = m.ClientOf(r)
	}
	if err := m.endRequestSession(r, ReasonLoginAgain); err != nil {
		return nil, err
	}
	s, token, err := m.Create(r.Context(), l)
	if err != nil {
		return nil, err
	}
	m.SetCookie(w, token, s)
	return s, nil
}

// Logout ends the session r carries, on the server and at once, expires
// its cookie and asks the browser to drop its cookies for the site
// ("Clear-Site-Data"). It succeeds if r carries no session. A cross-origin
// browser request authenticated by the cookie fails with ErrCrossOrigin.
func (m *Manager) Logout(w http.ResponseWriter, r *http.Request) error {
	if _, fromCookie := m.TokenFromRequest(r); fromCookie {
		if err := m.cfg.CrossOrigin.Check(r); err != nil {
			return fmt.Errorf("%w: %v", ErrCrossOrigin, err)
		}
	}
	if err := m.endRequestSession(r, ReasonLogout); err != nil {
		return err
	}
	m.clearCookie(w)
	w.Header().Set("Clear-Site-Data", `"cookies"`)
	return nil
}

// endRequestSession deletes the session r's token names, if any.
func (m *Manager) endRequestSession(r *http.Request, reason string) error {
	token, h, _ := m.tokenFromRequest(r)
	if token == "" {
		return nil
	}
	s, err := m.store.ByHash(r.Context(), h)
	switch {
	case errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidRecord):
		return nil
	case err != nil:
		return err
	}
	if err := m.store.Delete(r.Context(), s.ID); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	c := m.ClientOf(r)
	m.emit(r.Context(), Event{Type: EventRevoked, SessionID: s.ID, UserID: s.UserID, Actor: s.UserID, Reason: reason, IP: c.IP, UserAgent: c.UserAgent})
	return nil
}

// Renew rotates the session loaded for r (see Rotate), applying ch, and
// sets the new cookie on w. Call it on a privilege change in a request
// authenticated by cookie; for a bearer client, call Rotate and hand the
// client its new token.
func (m *Manager) Renew(w http.ResponseWriter, r *http.Request, ch Change) (*Session, error) {
	cur := FromContext(r.Context())
	if cur == nil {
		return nil, ErrNotFound
	}
	s, token, err := m.Rotate(r.Context(), cur.ID, ch)
	if err != nil {
		return nil, err
	}
	m.SetCookie(w, token, s)
	return s, nil
}

// SetCookie sets the session cookie for token on w: HttpOnly (scripts
// cannot read it), Secure, SameSite and host-only per Config.Cookie, and
// without Max-Age unless s is a "remember me" session, so that it dies
// with the browser. It also sets "Cache-Control: no-store".
func (m *Manager) SetCookie(w http.ResponseWriter, token string, s *Session) {
	c := m.cookie(token)
	if s.Remember {
		c.MaxAge = max(int(s.AbsoluteDeadline.Sub(m.cfg.Now())/time.Second), 1)
	}
	http.SetCookie(w, c)
	w.Header().Set("Cache-Control", "no-store")
}

// clearCookie tells the browser to delete the session cookie.
func (m *Manager) clearCookie(w http.ResponseWriter) {
	c := m.cookie("")
	c.MaxAge = -1
	http.SetCookie(w, c)
	w.Header().Set("Cache-Control", "no-store")
}

func (m *Manager) cookie(value string) *http.Cookie {
	return &http.Cookie{
		Name:     m.cfg.Cookie.Name,
		Value:    value,
		Path:     "/",
		Domain:   m.cfg.Cookie.Domain,
		Secure:   !m.cfg.Cookie.InsecureDevelopmentNoSecureFlag,
		HttpOnly: true,
		SameSite: m.cfg.Cookie.SameSite,
	}
}

// writeError writes a refusal with Config.WriteError, or as JSON.
func (m *Manager) writeError(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	if m.cfg.WriteError != nil {
		m.cfg.WriteError(w, r, status, code, message)
		return
	}
	writeError(w, status, code, message)
}

// writeError writes the JSON error body every sessiond response uses.
func writeError(w http.ResponseWriter, status int, code, message string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message = code, message
	json.NewEncoder(w).Encode(body)
}
