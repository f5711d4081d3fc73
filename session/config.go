package session

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Config is a Manager's policy. The zero value of every field means its
// documented default; New fills the defaults in and calls Validate.
// The defaults follow NIST SP 800-63B §4.2.3 (AAL2: reauthenticate after
// 12 hours, or after 30 minutes of inactivity) and OWASP's Session
// Management Cheat Sheet.
type Config struct {
	// IdleTimeout ends a session that has not been used for this long.
	// Default 30 minutes.
	IdleTimeout time.Duration
	// AbsoluteTimeout ends a session this long after login, however
	// active. Default 12 hours.
	AbsoluteTimeout time.Duration
	// RememberMeIdleTimeout and RememberMeTimeout replace IdleTimeout and
	// AbsoluteTimeout for sessions created with Remember set ("remember
	// me", an opt-in of the user). Defaults 7 days and 30 days.
	RememberMeIdleTimeout time.Duration
	RememberMeTimeout     time.Duration

	// MaxSessionsPerUser bounds the live sessions of one user, so that a
	// login flood cannot grow the store without bound. Default 100; a
	// negative value means no limit.
	MaxSessionsPerUser int
	// RejectAtLimit makes a login at the limit fail with
	// ErrTooManySessions. By default the user's oldest session ends to make
	// room.
	RejectAtLimit bool

	// TouchInterval throttles the sliding idle deadline: a session is
	// written back to the store only when it was last seen at least this
	// long ago, so validation is a read, not a write, on most requests.
	// Default: one minute or IdleTimeout/10, whichever is shorter. The idle
	// timeout is thus enforced to within TouchInterval.
	TouchInterval time.Duration

	// RotationInterval turns on periodic rotation: a cookie session whose
	// token is older than this gets a new one on its next request. Zero,
	// the default, turns it off (tokens still change on every privilege
	// change; see Manager.Renew).
	RotationInterval time.Duration
	// RotationGrace is how long the replaced token keeps working after a
	// periodic rotation, for requests already in flight. A use of it after
	// that signals a stolen token and revokes the session. Default 30
	// seconds.
	RotationGrace time.Duration

	// MaxDataSize bounds Session.Data in bytes. Default 4096.
	MaxDataSize int

	// Cookie sets how browsers hold the token.
	Cookie CookieConfig

	// CrossOrigin guards every state-changing request that a cookie
	// authenticates, and logins, against cross-site request forgery
	// (OWASP CSRF Prevention Cheat Sheet). Nil means
	// http.NewCrossOriginProtection(): same-origin requests and requests
	// that are not from a browser pass.
	CrossOrigin *http.CrossOriginProtection
	// ClientIP returns the client address recorded with a session. Nil
	// means the host part of r.RemoteAddr; behind a proxy, set it to read
	// the proxy's header, trusting it only from the proxy.
	ClientIP func(r *http.Request) string

	// LoginURL, if set, is where Require sends a browser without a valid
	// session instead of answering 401: a GET or HEAD request whose Accept
	// header asks for text/html gets 303 See Other to LoginURL with "rd"
	// added to its query, the request URI to come back to. rd is always a
	// path on the app's own origin ("/orders?page=2"), never a URL with a
	// host, so a login page that redirects to it after signing in is no
	// open redirect; it should still check rd, which reaches it from the
	// browser. Other requests (API clients, form posts) get the 401.
	// LoginURL is a path ("/login") or an absolute http(s) URL. Empty, the
	// default, means every request without a session gets the 401.
	LoginURL string

	// Events receives every lifecycle event, for an audit log. Nil means
	// none are reported.
	Events EventSink
	// WriteError writes the refusals of Handler and Require: 401 to a
	// request without a session (Require), 403 to a cross-origin request,
	// 503 when the store fails. code names the reason for programs
	// ("unauthenticated", "cross_origin", "store_unavailable"), message for
	// people. Nil means a JSON body {"error":{"code","message"}}; set it to
	// answer in the app's own format, an HTML page for browsers say.
	WriteError func(w http.ResponseWriter, r *http.Request, status int, code, message string)
	// Logger receives operational logs (store failures, theft signals).
	// It never sees a token. Nil means no logs.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time
}

// CookieConfig sets the session cookie. The defaults make a host-only,
// HTTPS-only cookie that scripts cannot read (OWASP Session Management
// Cheat Sheet, "Cookies"; RFC 6265bis "__Host-" prefix).
type CookieConfig struct {
	// Name is the cookie name. Default "__Host-sid": the __Host- prefix
	// makes browsers refuse the cookie unless it is Secure, has Path=/ and
	// no Domain, so no sibling subdomain can plant or overwrite it.
	Name string
	// Domain shares the cookie with subdomains. Default empty: host-only.
	// It cannot be set with a __Host- name.
	Domain string
	// SameSite is the cookie's SameSite attribute. Default Lax, which
	// keeps the cookie off cross-site subrequests and form posts (a CSRF
	// defence) while top-level links into the site still work.
	SameSite http.SameSite
	// InsecureDevelopmentNoSecureFlag drops the Secure attribute so the
	// cookie works over plain HTTP. For local development only: over the
	// network it exposes every token to anyone on the path. It cannot be
	// combined with a __Host- or __Secure- name.
	InsecureDevelopmentNoSecureFlag bool
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.IdleTimeout, 30*time.Minute)
	def(&c.AbsoluteTimeout, 12*time.Hour)
	def(&c.RememberMeIdleTimeout, 7*24*time.Hour)
	def(&c.RememberMeTimeout, 30*24*time.Hour)
	def(&c.TouchInterval, min(time.Minute, c.IdleTimeout/10))
	def(&c.RotationGrace, 30*time.Second)
	if c.MaxSessionsPerUser == 0 {
		c.MaxSessionsPerUser = 100
	}
	if c.MaxDataSize == 0 {
		c.MaxDataSize = 4096
	}
	if c.Cookie.Name == "" {
		c.Cookie.Name = "__Host-sid"
	}
	if c.Cookie.SameSite == 0 {
		c.Cookie.SameSite = http.SameSiteLaxMode
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.CrossOrigin == nil {
		c.CrossOrigin = http.NewCrossOriginProtection()
	}
	return c
}

// Validate reports the first unsafe or inconsistent setting, with how to
// fix it. Zero fields are checked as their defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	check := func(bad bool, format string, args ...any) {
		if bad {
			errs = append(errs, fmt.Errorf("session: "+format, args...))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"IdleTimeout", c.IdleTimeout}, {"AbsoluteTimeout", c.AbsoluteTimeout},
		{"RememberMeIdleTimeout", c.RememberMeIdleTimeout}, {"RememberMeTimeout", c.RememberMeTimeout},
		{"TouchInterval", c.TouchInterval}, {"RotationInterval", c.RotationInterval},
		{"RotationGrace", c.RotationGrace},
	} {
		check(d.v < 0, "%s is %v: durations cannot be negative", d.name, d.v)
	}
	check(c.IdleTimeout > c.AbsoluteTimeout, "IdleTimeout (%v) exceeds AbsoluteTimeout (%v): lower it or raise AbsoluteTimeout", c.IdleTimeout, c.AbsoluteTimeout)
	check(c.RememberMeIdleTimeout > c.RememberMeTimeout, "RememberMeIdleTimeout (%v) exceeds RememberMeTimeout (%v)", c.RememberMeIdleTimeout, c.RememberMeTimeout)
	check(c.TouchInterval >= c.IdleTimeout, "TouchInterval (%v) must be shorter than IdleTimeout (%v), or sessions expire while in use", c.TouchInterval, c.IdleTimeout)
	check(c.RotationInterval > 0 && c.RotationGrace >= c.RotationInterval, "RotationGrace (%v) must be shorter than RotationInterval (%v)", c.RotationGrace, c.RotationInterval)
	check(c.MaxDataSize < 0, "MaxDataSize cannot be negative")
	check(c.LoginURL != "" && !validLoginURL(c.LoginURL), "LoginURL %q is neither a path starting with / nor an absolute http(s) URL", c.LoginURL)
	check(!validCookieName(c.Cookie.Name), "cookie name %q is not a valid cookie name (letters, digits and !#$%%&'*+-.^_`|~ only)", c.Cookie.Name)
	prefixed := strings.HasPrefix(c.Cookie.Name, "__Host-") || strings.HasPrefix(c.Cookie.Name, "__Secure-")
	check(strings.HasPrefix(c.Cookie.Name, "__Host-") && c.Cookie.Domain != "", "cookie name %q has the __Host- prefix, which forbids a Domain: drop Domain or rename the cookie", c.Cookie.Name)
	check(c.Cookie.InsecureDevelopmentNoSecureFlag && prefixed, "cookie name %q needs the Secure flag: rename the cookie (e.g. \"sid\") to use InsecureDevelopmentNoSecureFlag", c.Cookie.Name)
	check(c.Cookie.InsecureDevelopmentNoSecureFlag && c.Cookie.SameSite == http.SameSiteNoneMode, "SameSite=None requires the Secure flag")
	return errors.Join(errs...)
}

// validCookieName reports whether name is an RFC 6265 cookie-name token.
func validCookieName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?={}`, r) {
			return false
		}
	}
	return true
}

// validLoginURL reports whether u is a path on this origin or an absolute
// http(s) URL, without a fragment (rd is added to the query).
func validLoginURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil || p.Fragment != "" || p.User != nil {
		return false
	}
	if p.IsAbs() {
		return (p.Scheme == "https" || p.Scheme == "http") && p.Host != ""
	}
	return p.Host == "" && strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//")
}
