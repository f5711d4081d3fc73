// Package session is sessiond's core: server-side sessions for web apps and
// APIs, with net/http middleware. It knows, on every request, who is
// calling, and can end that knowledge at once, on every instance sharing
// the store.
//
// A Manager creates a session after the app has authenticated a user
// (Manager.Login, or Manager.Create for bearer clients), validates the token
// a request carries (Manager.Handler, Manager.Require, Manager.Validate),
// rotates it on privilege changes (Manager.Renew, Manager.Rotate) and ends
// it on logout, revocation, idle timeout or absolute timeout. Sessions live
// in a Store; the core imports none. sessiond's stores are store/memstore
// (one process), store/sqlitestore (an embedded file, the default),
// store/pgstore and store/redisstore (many instances), and every one
// passes the conformance suite in package storetest.
//
// A session records how its user proved who they are: Session.AMR lists
// RFC 8176 method references (AMRPassword, AMROTP, AMRHardwareKey, ...),
// given at login (Login.AMR) and added to when the user proves more
// (Change.AMR, a step-up, which rotates the token), and Session.AAL is the
// NIST SP 800-63B assurance level they amount to: 2 once AMR holds
// AMRMultiFactor (MergeAMR adds it for a password and a possession
// factor), 1 otherwise. An app (or sessiond's /resolve policies) asks for
// the level a route needs, and for a recent Session.AuthenticatedAt.
//
// # Threat model
//
// The attacker can send any request, read any response sent to them, plant
// cookies through a sibling subdomain or a plain-HTTP response, lure a
// signed-in user to a hostile page, and may obtain a copy of the store
// (backup, replica, SQL injection elsewhere). They cannot read the victim's
// TLS traffic or run script in the app's origin. Each property below stops
// one attack; each has a test that fails if the property breaks.
//
//   - Guessing a token. Tokens carry 256 bits from crypto/rand (OWASP
//     Session Management Cheat Sheet, "Session ID Entropy", asks for 64) and
//     mean nothing: no user ID, time or counter to predict.
//   - Turning a store dump into sessions. Stores keep SHA-256 of each
//     token, never the token (NIST SP 800-63B §5.1.1.2 treats stored
//     secrets as needing protection against offline use). A hash of a
//     256-bit random value cannot be reversed, so no slow hash is needed.
//   - Timing a token lookup. Lookups are by hash: an attacker who controls
//     the token controls nothing about the key that is compared.
//   - Flooding the store with junk tokens. ParseToken rejects anything not
//     shaped like a minted token before any store lookup, and a request
//     costs at most 1 + MaxSessionCookies lookups however many tokens it
//     carries. Manager.PresentedCredentials counts every token presented,
//     for a limit on the rate of invalid ones.
//   - Session fixation (OWASP, "Session Fixation"). Login always mints a new
//     token and ends the session the request carried; a token the server did
//     not issue is never adopted.
//   - Using a session past its time. Idle and absolute deadlines are kept
//     and checked on the server (NIST SP 800-63B §4.2.3: at AAL2, 30 minutes
//     idle and 12 hours absolute, the defaults), not left to a cookie's
//     expiry. Stores refuse expired sessions on read, sweeper or not.
//   - A token captured before a privilege change. Rotate and Renew replace
//     the token and kill the old one at once (OWASP, "Renew the Session ID
//     After Any Privilege Level Change").
//   - A stolen token in long sessions. Optional periodic rotation keeps a
//     replaced token alive only for a short grace window; a later use of it
//     means two parties hold the session, and it is revoked.
//   - Reading the cookie with injected script, sending it over HTTP, or
//     sharing it with a sibling host. The cookie is HttpOnly, Secure,
//     SameSite=Lax and named with the __Host- prefix (RFC 6265bis), so the
//     browser refuses it unless it is host-only with Path=/. Unsafe settings
//     fail Config.Validate; plain HTTP needs an option named as insecure.
//   - Shadowing the session cookie with a planted one. Only a cookie named
//     exactly Config.Cookie.Name, byte for byte, is the session cookie: a
//     sibling subdomain can plant "\u2000__Host-sid" or "\u00a0__Host-sid",
//     which the __Host- prefix does not bind (nor, in some browsers,
//     "__host-sid"), and none of them is read. Several cookies of the
//     exact name (possible without the prefix) are each tried in order, up
//     to MaxSessionCookies, so a planted one before the real one neither
//     hides it nor gets it expired: the cookie is expired only when every
//     one presented names no live session.
//   - Leaking the token through URLs, logs or Referer. Tokens are read only
//     from the cookie or an Authorization: Bearer header, never from a query
//     or form; logs and errors name sessions by their public ID.
//   - Cross-site request forgery (OWASP CSRF Prevention Cheat Sheet). Every
//     state-changing request authenticated by the cookie, and every login,
//     passes http.CrossOriginProtection, on top of SameSite.
//   - An open redirect through the login page. With Config.LoginURL,
//     Require sends a browser to the login page with rd, the page to come
//     back to, and rd is always a path on the app's own origin: a request
//     path that would read as another host ("//evil.example/") gets none.
//   - Caches keeping personal pages. Authenticated and token-bearing
//     responses carry Cache-Control: no-store and Vary: Cookie.
//   - Logout that does not log out. Logout deletes the session on the
//     server before expiring the cookie and sending Clear-Site-Data.
//   - A store outage read as "valid". Store errors are distinct from
//     ErrNotFound and the middleware answers 503: it fails closed.
//   - Unbounded sessions per user. Config.MaxSessionsPerUser, enforced by
//     the store atomically with each insert.
//
// Out of scope here: authenticating users (passwords, rate limits; see
// sessiond's users and server packages), TLS, and script running in the
// app's own origin, which can act as the user whatever the session does.
package session
