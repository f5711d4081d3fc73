package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ErrCrossOrigin is returned by Login and Logout for a cross-origin browser
// request: a forged form post from another site.
var ErrCrossOrigin = errors.New("session: cross-origin request refused")

// ctxKey keys the request's session in its context; bearer tells how the
// client presented it (one key per way, so that the middleware stores
// both facts in one context value).
type ctxKey struct{ bearer bool }

// NewContext returns a copy of ctx carrying s, presented as the session
// cookie, as the middleware does; for tests of handlers that read
// FromContext.
func NewContext(ctx context.Context, s *Session) context.Context {
	return context.WithValue(ctx, ctxKey{}, s)
}

// FromContext returns the session that Manager.Handler loaded for the
// request, or nil if the request carried no valid session.
func FromContext(ctx context.Context) *Session {
	if s, ok := ctx.Value(ctxKey{}).(*Session); ok {
		return s
	}
	s, _ := ctx.Value(ctxKey{bearer: true}).(*Session)
	return s
}

// PresentedAsBearer reports whether the session FromContext returns came
// in an "Authorization: Bearer" header rather than the session cookie: a
// privilege change then hands the client its new token (Manager.Rotate)
// instead of a new cookie (Manager.Renew).
func PresentedAsBearer(ctx context.Context) bool {
	_, ok := ctx.Value(ctxKey{bearer: true}).(*Session)
	return ok
}

// MaxSessionCookies bounds the cookies named exactly Config.Cookie.Name
// that Load, Handler, Require, Login and Logout try: the first
// MaxSessionCookies, in the order the request lists them. Each well-formed
// one costs a store lookup, and a browser sends more than one only if
// others were planted for a parent domain or a longer path, which the
// default __Host- name prevents. The cookies past the bound are ignored;
// PresentedCredentials still counts them.
const MaxSessionCookies = 8

// TokenFromRequest returns the first well-formed token r carries and
// whether it came from the session cookie. It reads an "Authorization:
// Bearer" header (RFC 6750 §2.1) first, then the cookies named exactly
// Config.Cookie.Name (the first MaxSessionCookies of them), and nothing
// else: a token in a URL or form field would leak through logs, history
// and Referer, so it is ignored. It returns "" if there is none.
//
// TokenFromRequest does no store lookup, so the token it returns may name
// no session while a later one does; Load and the middleware try each in
// the same order and use the first that names a live session.
func (m *Manager) TokenFromRequest(r *http.Request) (token string, fromCookie bool) {
	if tok, _, ok := bearer(r.Header.Get("Authorization")); ok {
		return tok, false
	}
	c := m.sessionCookies(r)
	for range MaxSessionCookies {
		val, ok := c.next()
		if !ok {
			break
		}
		if _, err := ParseToken(val); err == nil {
			return val, true
		}
	}
	return "", false
}

// PresentedCredentials returns how many credentials r presents, well-formed
// or not: one for each non-empty Authorization header field and one for
// each cookie named exactly Config.Cookie.Name, including those past
// MaxSessionCookies that are never tried. A service that limits the rate of
// invalid tokens should charge a request that authenticates nothing this
// many, so that packing guesses into one request buys nothing: fifty bad
// cookies cost fifty.
func (m *Manager) PresentedCredentials(r *http.Request) int {
	n := 0
	for _, v := range r.Header["Authorization"] {
		if v != "" {
			n++
		}
	}
	c := m.sessionCookies(r)
	for {
		if _, ok := c.next(); !ok {
			return n
		}
		n++
	}
}

// sessionCookies returns a scanner over the session cookies r presents.
func (m *Manager) sessionCookies(r *http.Request) cookieScanner {
	return cookieScanner{lines: r.Header["Cookie"], name: m.cfg.Cookie.Name}
}

// cookieScanner reads Cookie header field values (RFC 6265 §4.2.1, §5.4)
// for the cookies of one name. Pairs are separated by ";" and may be
// surrounded by spaces and horizontal tabs; a pair counts only if its name,
// the bytes before its first "=", equals the scanner's name byte for byte.
// A Unicode space before the name, a "_" for a "-" or a letter in another
// case makes another cookie's name, which a browser may hold under other
// rules: a sibling subdomain can set "\u2000__Host-sid", as the __Host-
// prefix binds only names that start with it. Scanning allocates nothing.
type cookieScanner struct {
	lines []string // header field values not yet read
	rest  string   // the rest of the field value being read
	name  string   // the cookie name to match
}

// next returns the value of the next cookie named c.name, without the
// double quotes RFC 6265 allows around a value, or false if there is none.
func (c *cookieScanner) next() (string, bool) {
	for {
		if c.rest == "" {
			if len(c.lines) == 0 {
				return "", false
			}
			c.rest, c.lines = c.lines[0], c.lines[1:]
			continue
		}
		var pair string
		pair, c.rest, _ = strings.Cut(c.rest, ";")
		pair = trimOWS(pair)
		if len(pair) <= len(c.name) || pair[len(c.name)] != '=' || pair[:len(c.name)] != c.name {
			continue
		}
		val := pair[len(c.name)+1:]
		if len(val) > 1 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		return val, true
	}
}

// trimOWS returns s without leading and trailing spaces and horizontal
// tabs, the only whitespace RFC 6265 (§4.2.1, §5.4) puts around a cookie
// pair.
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// found is what find learned about a request's credentials.
type found struct {
	s          *Session // the session found, or nil
	current    bool     // the token that found s is its current one, not a replaced one
	fromCookie bool     // s was found by a session cookie, not the Authorization header
	cookie     bool     // the request presented a session cookie
	untried    bool     // it presented more than MaxSessionCookies: some were not tried
}

// find returns the live session named by the first of r's credentials that
// names one, trying the "Authorization: Bearer" header, then each of the
// first MaxSessionCookies session cookies in order, and checking each
// token's shape before its store lookup. It returns ErrNotFound if none
// names a live session, and another error as soon as the store fails.
// Store calls use ctx.
func (m *Manager) find(ctx context.Context, r *http.Request) (found, error) {
	var f found
	client := func() Client { return m.ClientOf(r) }
	if _, h, ok := bearer(r.Header.Get("Authorization")); ok {
		switch s, current, err := m.validateHash(ctx, h, client); {
		case err == nil:
			return found{s: s, current: current}, nil
		case !errors.Is(err, ErrNotFound):
			return f, err
		}
	}
	c := m.sessionCookies(r)
	for tried := 0; ; tried++ {
		val, ok := c.next()
		if !ok {
			return f, ErrNotFound
		}
		f.cookie = true
		if tried == MaxSessionCookies {
			f.untried = true
			return f, ErrNotFound
		}
		h, err := ParseToken(val)
		if err != nil {
			continue
		}
		switch s, current, err := m.validateHash(ctx, h, client); {
		case err == nil:
			return found{s: s, current: current, fromCookie: true, cookie: true}, nil
		case !errors.Is(err, ErrNotFound):
			return f, err
		}
	}
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

// Load returns the live session named by the first of r's tokens that
// names one: the "Authorization: Bearer" header, then each of the first
// MaxSessionCookies cookies named exactly Config.Cookie.Name, in order. A
// valid session cookie is found among any number of invalid ones before
// it, of that name or of a look-alike one. Load returns ErrNotFound if no
// token names a live session, and another error only if the store fails.
// It does no CSRF check and no periodic rotation; Handler does both.
func (m *Manager) Load(r *http.Request) (*Session, error) {
	return m.LoadContext(r.Context(), r)
}

// LoadContext is Load with ctx for the store calls in place of r's
// context: for a caller that bounds them (with a deadline, say) without
// copying r to carry ctx.
func (m *Manager) LoadContext(ctx context.Context, r *http.Request) (*Session, error) {
	f, err := m.find(ctx, r)
	return f.s, err
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
// Handler finds the session as Load does. It expires the session cookie
// in the browser only when r presents cookies of that name and none of
// them names a live session: a cookie of another name, however alike, or
// an invalid one beside a valid one, never gets the valid one expired. If
// the store fails, Handler answers 503 rather than guess: it fails closed.
func (m *Manager) Handler(next http.Handler) http.Handler {
	return m.handler(next, false)
}

// Require is Handler that also answers requests without a valid session:
// 401 (with Config.WriteError), or, with Config.LoginURL set, a redirect
// to the login page for a browser's GET or HEAD (see Config.LoginURL).
func (m *Manager) Require(next http.Handler) http.Handler {
	return m.handler(next, true)
}

// loginRedirect returns where Require sends r, a request without a valid
// session: Config.LoginURL with rd set to r's request URI, if LoginURL is
// set and r is a browser's GET or HEAD asking for HTML. rd is left out
// when the request URI is not a plain path ("//host/..." would read as
// another origin).
func (m *Manager) loginRedirect(r *http.Request) (string, bool) {
	if m.cfg.LoginURL == "" || r.Method != http.MethodGet && r.Method != http.MethodHead || !strings.Contains(r.Header.Get("Accept"), "text/html") {
		return "", false
	}
	back := r.URL.RequestURI()
	if !strings.HasPrefix(back, "/") || strings.HasPrefix(back, "//") || strings.HasPrefix(back, "/\\") {
		return m.cfg.LoginURL, true
	}
	sep := "?"
	if strings.Contains(m.cfg.LoginURL, "?") {
		sep = "&"
	}
	return m.cfg.LoginURL + sep + "rd=" + url.QueryEscape(back), true
}

func (m *Manager) handler(next http.Handler, required bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := m.find(r.Context(), r)
		s, fromCookie := f.s, f.fromCookie
		switch {
		case errors.Is(err, ErrNotFound):
			// With cookies left untried, one of them may be live.
			if f.cookie && !f.untried {
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
			if f.current {
				if tok := m.rotateIfDue(r.Context(), s); tok != "" {
					m.SetCookie(w, tok, s)
				}
			}
		}
		if s == nil {
			if required {
				if loc, ok := m.loginRedirect(r); ok {
					w.Header().Set("Cache-Control", "no-store")
					http.Redirect(w, r, loc, http.StatusSeeOther)
					return
				}
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
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{bearer: !fromCookie}, s)))
	})
}

// Login starts a session for l after the app has checked the user's
// credentials, sets its cookie on w and returns it. It first ends the
// session r already carries, if any (the one Load finds): a login always
// yields a fresh token, so a token planted in the browser before login
// (session fixation, OWASP Session Management Cheat Sheet) is worthless. A
// zero l.Client is filled from r. A cross-origin browser request fails
// with ErrCrossOrigin (login CSRF).
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

// Logout ends the session r carries (the one Load finds), on the server
// and at once, expires its cookie and asks the browser to drop its cookies
// for the site ("Clear-Site-Data"). It succeeds if r carries no session. A
// cross-origin browser request that presents a session cookie, valid or
// not, fails with ErrCrossOrigin.
func (m *Manager) Logout(w http.ResponseWriter, r *http.Request) error {
	c := m.sessionCookies(r)
	if _, ok := c.next(); ok {
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

// endRequestSession deletes the session Load finds for r, if any.
func (m *Manager) endRequestSession(r *http.Request, reason string) error {
	f, err := m.find(r.Context(), r)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return err
	}
	s := f.s
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
