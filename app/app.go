// Package app is sessiond's application layer: every action on accounts
// and sessions that the HTTP service, the web pages and the command line
// offer, each in one function that looks up what it acts on, changes it,
// ends the sessions it must and writes the audit log. The transports
// (package server, cmd/sessiond) decode requests, call an App, and encode
// its answer; they hold no account rules of their own.
//
// The rules it keeps, whichever transport asks:
//   - No session outlives an account change: a change of password, roles
//     or status, or a reset of the second factors, ends the user's
//     sessions after it is stored, and a login
//     re-reads the account after its session is stored (see SignIn), so a
//     login that raced the change is undone.
//   - The last enabled admin keeps the role and stays enabled (the
//     Directory enforces it atomically).
//   - Password guessing is throttled per account and client network, per
//     account, and per network, counting failures only (ThrottleConfig);
//     second-factor codes count against the same limits.
//   - A TOTP code counts once, a recovery code once; no secret or code is
//     logged or audited.
//   - Every string a client controls that is stored or logged is bounded.
//   - Every action is audited with its actor, client and reason.
package app

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// App carries out account and session actions. It is safe for concurrent
// use; any number of Apps (in any number of processes) may share stores.
type App struct {
	sessions *session.Manager
	accounts *users.Accounts
	audit    audit.Log
	log      *slog.Logger
	throttle *throttle
	now      func() time.Time
	// usernames caches user ID → username (see Username).
	usernames *nameCache
	// secondFactor says who must prove a second factor.
	secondFactor SecondFactorPolicy
	// passkeyLimits bounds the passkey ceremonies clients begin.
	passkeyLimits *passkeyLimits
	// factors keeps second factors; nil if the directory keeps none.
	factors    users.Factors
	totpIssuer string
	// webhooks delivers the audit log's events; nil if none is set up.
	webhooks Webhooks
}

// Deps are the parts an App is built from.
type Deps struct {
	// Store keeps the sessions.
	Store session.Store
	// Session is the session policy. New sends its events to the audit
	// log, and then to Session.Events, if set.
	Session session.Config
	// Accounts checks credentials and keeps users.
	Accounts *users.Accounts
	// Audit keeps the audit log.
	Audit audit.Log
	// Logger receives an "audit" line per event and failures to store
	// one; nil discards them.
	Logger *slog.Logger
	// Throttle slows down password and code guessing; zero fields take
	// DefaultThrottle's.
	Throttle ThrottleConfig
	// SecondFactor says who must prove a second factor. Default: nobody
	// (each user may still choose to).
	SecondFactor SecondFactorPolicy
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Factors keeps the users' second factors. Nil means the Accounts'
	// Directory, if it is a users.Factors (both of sessiond's are);
	// without one, the second-factor actions fail.
	Factors users.Factors
	// TOTPIssuer names the service in authenticator apps. Default
	// users.DefaultTOTPIssuer ("sessiond").
	TOTPIssuer string
	// Webhooks delivers the audit log's events to webhooks (the database
	// queues them as they are appended); the App wakes it after each
	// event and reports on it to admins. Nil: no webhooks.
	Webhooks Webhooks
}

// New returns an App over d. It fails if the session policy is unsafe
// (session.Config.Validate).
func New(d Deps) (*App, error) {
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := d.Now
	if now == nil {
		now = time.Now
	}
	a := &App{accounts: d.Accounts, audit: d.Audit, log: log, throttle: newThrottle(d.Throttle), now: now, usernames: newNameCache(maxUsernames),
		factors: d.Factors, totpIssuer: d.TOTPIssuer, secondFactor: d.SecondFactor, webhooks: d.Webhooks}
	if a.factors == nil && d.Accounts != nil {
		a.factors, _ = d.Accounts.Directory().(users.Factors)
	}
	a.passkeyLimits = newPasskeyLimits(a.throttle.client.maxKeys)
	sc := d.Session
	next := sc.Events
	sc.Events = session.EventFunc(func(ctx context.Context, e session.Event) {
		a.recordSession(ctx, e)
		if next != nil {
			next.Record(ctx, e)
		}
	})
	if sc.Logger == nil {
		sc.Logger = log
	}
	if sc.Now == nil {
		sc.Now = now
	}
	m, err := session.New(d.Store, sc)
	if err != nil {
		return nil, err
	}
	a.sessions = m
	return a, nil
}

// Sessions returns the App's session Manager.
func (a *App) Sessions() *session.Manager { return a.sessions }

// Accounts returns the App's accounts.
func (a *App) Accounts() *users.Accounts { return a.accounts }

// Actor is who performs an action, for permission checks and the audit
// log. Build one with SessionActor, or use CLI.
type Actor struct {
	// ID is the acting user's ID, or ActorCLI.
	ID string
	// SessionID is the session the action is made through, if any.
	SessionID string
	// Admin says the actor may take admin actions.
	Admin bool
	// AAL is the assurance level of the actor's session (0 for the
	// command line, which needs none).
	AAL int
	// Client is where the request came from; its fields are bounded.
	Client session.Client
}

// ActorCLI names the command line as the actor in audit events.
const ActorCLI = "cli"

// CLI is the command line as an actor: an operator with access to the
// stores, so an admin.
var CLI = Actor{ID: ActorCLI, Admin: true}

// SessionActor is the user signed in with s, acting from c.
func SessionActor(s *session.Session, c session.Client) Actor {
	return Actor{ID: s.UserID, SessionID: s.ID, Admin: slices.Contains(s.Roles, users.RoleAdmin), AAL: s.AAL(), Client: boundClient(c)}
}

// The bounds on client-controlled strings that are stored or logged.
const (
	maxUserAgent = 256
	maxIP        = 64
	maxField     = 256
)

// bound cuts s to at most n bytes, on a UTF-8 boundary, dropping invalid
// bytes.
func bound(s string, n int) string {
	if len(s) <= n && utf8.ValidString(s) {
		return s
	}
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "")
}

func boundClient(c session.Client) session.Client {
	return session.Client{IP: bound(c.IP, maxIP), UserAgent: bound(c.UserAgent, maxUserAgent)}
}

// record appends e to the audit log and writes the "audit" log line. A
// failure to store it is logged, not returned: the event has happened.
// Every field is bounded.
func (a *App) record(ctx context.Context, e audit.Event) {
	if e.Time.IsZero() {
		e.Time = a.now().UTC()
	}
	e.UserAgent = bound(e.UserAgent, maxUserAgent)
	e.IP = bound(e.IP, maxIP)
	e.Username, e.Reason = bound(e.Username, maxField), bound(e.Reason, maxField)
	e.UserID, e.SessionID, e.Actor = bound(e.UserID, maxField), bound(e.SessionID, maxField), bound(e.Actor, maxField)
	attrs := []any{"type", e.Type}
	for _, kv := range [...][2]string{{"user_id", e.UserID}, {"username", e.Username}, {"session_id", e.SessionID}, {"actor", e.Actor}, {"reason", e.Reason}, {"ip", e.IP}} {
		if kv[1] != "" {
			attrs = append(attrs, kv[0], kv[1])
		}
	}
	a.log.InfoContext(ctx, "audit", attrs...)
	if err := a.audit.Append(ctx, &e); err != nil {
		a.log.ErrorContext(ctx, "audit log append failed", "type", e.Type, "err", err)
		return
	}
	if a.webhooks != nil {
		a.webhooks.Notify()
	}
}

// recordBy audits an action of actor on u.
func (a *App) recordBy(ctx context.Context, actor Actor, typ string, u *users.User, reason string) {
	e := audit.Event{Type: typ, Actor: actor.ID, Reason: reason, IP: actor.Client.IP, UserAgent: actor.Client.UserAgent, SessionID: actor.SessionID}
	if u != nil {
		e.UserID, e.Username = u.ID, u.Username
	}
	a.record(ctx, e)
}

// recordSession is the session Manager's event sink: every session event
// but the idle-deadline extensions (once a minute per active session)
// goes to the audit log, with the user's username.
func (a *App) recordSession(ctx context.Context, e session.Event) {
	if e.Type == session.EventExtended {
		return
	}
	ev := audit.Event{Time: e.Time.UTC(), Type: string(e.Type), UserID: e.UserID, SessionID: e.SessionID, Actor: e.Actor, Reason: e.Reason, IP: e.IP, UserAgent: e.UserAgent}
	if e.UserID != "" {
		ev.Username, _ = a.Username(ctx, e.UserID)
	}
	a.record(ctx, ev)
}
