package server

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// Passkeys over HTTP. Each WebAuthn ceremony is two JSON posts made by
// the pages' one script (web/passkey.js): …/begin answers the options for
// navigator.credentials.create() or .get() and sets the ceremony's ID in
// the passkeyCookie; …/finish sends the browser's answer, with that
// cookie, and gets the result. The pages that offer a passkey button load
// the script under contentSecurityPolicyScript; every other page stays
// script-free, and without JavaScript the buttons stay hidden and
// everything else works.
//
// The relying party (the site passkeys belong to) is the public URL
// (--public-url); without one, only a browser on this machine reaching
// sessiond as localhost can use passkeys (development). A Host header is
// never believed otherwise: a proxy that forwards another site's requests
// could then have credentials registered for that site.

// passkeyCookie carries a ceremony's ID from its begin to its finish:
// host-only, HTTPS only (WebAuthn needs a secure context anyway), not for
// scripts, sent to this site alone, and gone with the ceremony.
const passkeyCookie = "__Host-sessiond-passkey"

// maxPasskeyBody bounds a finish request: an answer with "none"
// attestation is well under 2 KiB; attestation certificates, which
// sessiond does not ask for, could make it a few KiB.
const maxPasskeyBody = 16 << 10

// The routes of the passkey ceremonies, which the pages' buttons name.
const (
	passkeyLoginBegin     = "/login/passkey/begin"
	passkeyLoginFinish    = "/login/passkey/finish"
	passkeyStepBegin      = "/login/passkey/second-factor/begin"
	passkeyStepFinish     = "/login/passkey/second-factor/finish"
	passkeyReauthBegin    = "/login/passkey/reauth/begin"
	passkeyReauthFinish   = "/login/passkey/reauth/finish"
	passkeyRegisterBegin  = "/api/v1/passkeys/register/begin"
	passkeyRegisterFinish = "/api/v1/passkeys/register/finish"
)

// passkeyRoutes registers the passkey endpoints: public ones with mux,
// the self-service API with self, the account page's forms with page.
func (s *Server) passkeyRoutes(mux routeMux, self, page func(string, http.HandlerFunc)) {
	mux.HandleFunc("GET /static/passkey.js", passkeyScript)
	mux.HandleFunc("POST "+passkeyLoginBegin, s.passkeyLoginBegin)
	mux.HandleFunc("POST "+passkeyLoginFinish, s.passkeyLoginFinish)
	mux.Handle("POST "+passkeyStepBegin, s.sessions.Handler(http.HandlerFunc(s.passkeyStepBegin)))
	mux.Handle("POST "+passkeyStepFinish, s.sessions.Handler(http.HandlerFunc(s.passkeyStepFinish)))
	self("POST "+passkeyReauthBegin, s.passkeyCheckBegin)
	self("POST "+passkeyReauthFinish, s.passkeyReauthFinish)
	self("POST "+passkeyRegisterBegin, s.passkeyRegisterBegin)
	self("POST "+passkeyRegisterFinish, s.passkeyRegisterFinish)
	self("GET /api/v1/passkeys", s.passkeyList)
	self("PATCH /api/v1/passkeys/{id}", s.passkeyRename)
	self("DELETE /api/v1/passkeys/{id}", s.passkeyRemove)
	page("POST /account/passkeys/{id}/rename", s.accountPasskeyRename)
	page("POST /account/passkeys/{id}/remove", s.accountPasskeyRemove)
}

// relyingParty is the relying party r's passkeys belong to; ok is false
// where passkeys cannot be used (see the comment at the top).
func (s *Server) relyingParty(r *http.Request) (rp app.RelyingParty, ok bool) {
	if u := s.cfg.PublicURL; u != nil {
		if u.Hostname() == "" || u.Scheme != "https" && u.Scheme != "http" {
			return rp, false
		}
		return app.RelyingParty{ID: strings.ToLower(u.Hostname()), Origin: u.Scheme + "://" + strings.ToLower(u.Host)}, true
	}
	host := strings.ToLower(r.Host)
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	if name != "localhost" && !strings.HasSuffix(name, ".localhost") || !peerAddr(r).IsLoopback() || r.Header.Get("X-Forwarded-Host") != "" {
		return rp, false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return app.RelyingParty{ID: name, Origin: scheme + "://" + host}, true
}

// passkeyParty is relyingParty for a ceremony's request: ok is false,
// and the request answered 404, where passkeys cannot be used.
func (s *Server) passkeyParty(w http.ResponseWriter, r *http.Request) (app.RelyingParty, bool) {
	rp, ok := s.relyingParty(r)
	if !ok {
		writeError(w, app.Errorf(app.CodeNotFound, "Passkeys are not available here: the server needs its public URL (--public-url)."))
	}
	return rp, ok
}

// beginCeremony answers a begun ceremony: its options, and its ID in the
// passkeyCookie.
func beginCeremony(w http.ResponseWriter, c *app.Ceremony) {
	http.SetCookie(w, &http.Cookie{
		Name: passkeyCookie, Value: c.ID, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
		MaxAge: int(time.Until(c.ExpiresAt) / time.Second),
	})
	writeJSON(w, http.StatusOK, c.Options)
}

// ceremonyID is the ID of r's ceremony, from its cookie, which w expires:
// a ceremony is finished once, whatever the outcome.
func ceremonyID(w http.ResponseWriter, r *http.Request) string {
	http.SetCookie(w, &http.Cookie{Name: passkeyCookie, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	c, err := r.Cookie(passkeyCookie)
	if err != nil {
		return ""
	}
	return c.Value
}

// passkeyAnswer is the body of a ceremony's finish: the browser's
// credential (PublicKeyCredential.toJSON()), and what the page adds.
type passkeyAnswer struct {
	Credential json.RawMessage `json:"credential"`
	// Name names a new passkey (registration).
	Name string `json:"name"`
	// Remember and RD are those of a login.
	Remember bool   `json:"remember"`
	RD       string `json:"rd"`
}

var errNoCredential = app.Errorf(app.CodeInvalid, "The body needs the passkey's answer: {\"credential\":{…}}.")

// ceremonyAnswer is the ceremony ID (ceremonyID) and the answer
// (readPasskeyAnswer) of a ceremony's finish; ok is false, the refusal
// written, for a body it cannot read.
func (s *Server) ceremonyAnswer(w http.ResponseWriter, r *http.Request) (id string, ans passkeyAnswer, ok bool) {
	id = ceremonyID(w, r)
	ans, err := readPasskeyAnswer(w, r)
	if err != nil {
		s.writeErr(w, r, err)
		return "", ans, false
	}
	return id, ans, true
}

// readPasskeyAnswer reads a finish's body: JSON, at most maxPasskeyBody
// bytes, no unknown field, a credential object.
func readPasskeyAnswer(w http.ResponseWriter, r *http.Request) (passkeyAnswer, error) {
	var a passkeyAnswer
	r.Body = http.MaxBytesReader(w, r.Body, maxPasskeyBody)
	if err := decodeJSON(w, r, &a); err != nil {
		return a, err
	}
	if len(a.Credential) == 0 || a.Credential[0] != '{' {
		return a, errNoCredential
	}
	return a, nil
}

// passkeyLoginBegin is POST /login/passkey/begin: anyone may start a
// passkey sign-in (the ceremonies are limited per client network).
func (s *Server) passkeyLoginBegin(w http.ResponseWriter, r *http.Request) {
	if err := s.sessions.Config().CrossOrigin.Check(r); err != nil {
		writeError(w, errCrossOrigin)
		return
	}
	rp, ok := s.passkeyParty(w, r)
	if !ok {
		return
	}
	c, err := s.app.BeginPasskeyLogin(r.Context(), rp, s.sessions.ClientOf(r))
	if err != nil {
		s.passkeyFailed(w, r, err)
		return
	}
	beginCeremony(w, c)
}

// passkeyLoginFinish is POST /login/passkey/finish {"credential",
// "remember", "rd"}: a sign-in without a password. It answers as a JSON
// login does, {"session","user"}, with "redirect": where the page goes
// next (rd if it is on this site, else /account). The token is only in
// the Set-Cookie header.
func (s *Server) passkeyLoginFinish(w http.ResponseWriter, r *http.Request) {
	rp, ok := s.passkeyParty(w, r)
	if !ok {
		return
	}
	if err := s.sessions.Config().CrossOrigin.Check(r); err != nil {
		writeError(w, errCrossOrigin)
		return
	}
	id, ans, ok := s.ceremonyAnswer(w, r)
	if !ok {
		return
	}
	u, sess, err := s.app.FinishPasskeyLogin(r.Context(), rp, id, ans.Credential, ans.Remember, s.sessions.ClientOf(r), func(l session.Login) (*session.Session, error) {
		return s.sessions.Login(w, r, l)
	})
	if err != nil {
		if reason := loginFailure(err); reason != "" {
			s.metrics.loginFailures.WithLabelValues(reason).Inc()
		}
		s.passkeyFailed(w, r, err)
		return
	}
	s.metrics.logins.Inc()
	noteSession(r.Context(), u.ID, sess.ID)
	writeJSON(w, http.StatusOK, map[string]any{"session": viewSession(sess, sess.ID), "user": viewUser(u), "redirect": s.safeRedirect(r, ans.RD)})
}

// passkeyFailed answers a ceremony that failed with err, counting the
// rate limit in the metrics.
func (s *Server) passkeyFailed(w http.ResponseWriter, r *http.Request, err error) {
	if e := app.ErrorOf(err); e != nil && e.Code == app.CodeRateLimited {
		s.metrics.rateLimited.WithLabelValues("login").Inc()
	}
	s.writeErr(w, r, err)
}

// stepTicket is the ticket of r's pending sign-in for the passkey
// second-factor step, "" if the step is for r's session instead: there is
// no pending sign-in, or it has gone stale beside a live session (its
// cookie is then deleted), as in the code step (secondFactor).
func (s *Server) stepTicket(w http.ResponseWriter, r *http.Request) string {
	ticket := s.pendingTicket(r)
	if ticket == "" || session.FromContext(r.Context()) == nil {
		return ticket
	}
	if _, _, err := s.app.PendingSignIn(r.Context(), ticket); isCode(err, app.CodeUnauthenticated) {
		http.SetCookie(w, s.pendingCookie("", -1))
		return ""
	}
	return ticket
}

// passkeyStepBegin is POST /login/passkey/second-factor/begin: a passkey
// check for the user of r's pending sign-in (its cookie), or else of r's
// session, which the check raises to AAL2 (see passkeyReauthFinish).
func (s *Server) passkeyStepBegin(w http.ResponseWriter, r *http.Request) {
	if err := s.sessions.Config().CrossOrigin.Check(r); err != nil {
		writeError(w, errCrossOrigin)
		return
	}
	ticket := s.stepTicket(w, r)
	if ticket == "" {
		if session.FromContext(r.Context()) == nil {
			writeError(w, errUnauthenticated)
			return
		}
		s.passkeyCheckBegin(w, r)
		return
	}
	rp, ok := s.passkeyParty(w, r)
	if !ok {
		return
	}
	c, err := s.app.BeginPasskeySecondFactor(r.Context(), ticket, rp, s.sessions.ClientOf(r))
	if err != nil {
		s.passkeyFailed(w, r, err)
		return
	}
	beginCeremony(w, c)
}

// passkeyStepFinish is POST /login/passkey/second-factor/finish
// {"credential","rd"}: it completes r's pending sign-in with the passkey
// (a session cookie is set, the pending one deleted; {"session","user",
// "redirect"}), or else raises r's session to AAL2 (see
// passkeyReauthFinish).
func (s *Server) passkeyStepFinish(w http.ResponseWriter, r *http.Request) {
	if err := s.sessions.Config().CrossOrigin.Check(r); err != nil {
		writeError(w, errCrossOrigin)
		return
	}
	ticket := s.stepTicket(w, r)
	if ticket == "" {
		if session.FromContext(r.Context()) == nil {
			writeError(w, errUnauthenticated)
			return
		}
		s.passkeyReauthFinish(w, r)
		return
	}
	rp, ok := s.passkeyParty(w, r)
	if !ok {
		return
	}
	id, ans, ok := s.ceremonyAnswer(w, r)
	if !ok {
		return
	}
	u, sess, err := s.app.CompleteSecondFactorWithPasskey(r.Context(), ticket, rp, id, ans.Credential, s.sessions.ClientOf(r), func(l session.Login) (*session.Session, error) {
		return s.sessions.Login(w, r, l)
	})
	if err == nil || isCode(err, app.CodeUnauthenticated) {
		http.SetCookie(w, s.pendingCookie("", -1))
	}
	if err != nil {
		s.passkeyFailed(w, r, err)
		return
	}
	s.metrics.logins.Inc()
	noteSession(r.Context(), u.ID, sess.ID)
	writeJSON(w, http.StatusOK, map[string]any{"session": viewSession(sess, sess.ID), "user": viewUser(u), "redirect": s.safeRedirect(r, ans.RD)})
}

// passkeyCheckBegin is POST /login/passkey/reauth/begin: the signed-in
// user proves again who they are with one of their passkeys.
func (s *Server) passkeyCheckBegin(w http.ResponseWriter, r *http.Request) {
	rp, ok := s.passkeyParty(w, r)
	if !ok {
		return
	}
	actor := s.actor(r)
	c, err := s.app.BeginPasskeyCheck(r.Context(), actor.ID, rp, actor.Client)
	if err != nil {
		s.passkeyFailed(w, r, err)
		return
	}
	beginCeremony(w, c)
}

// passkeyReauthFinish is POST /login/passkey/reauth/finish
// {"credential","rd"}: the session gets a new token (a new cookie, or
// for a bearer client "token" in the answer) and its authentication time
// is now. It answers {"session","redirect"}.
func (s *Server) passkeyReauthFinish(w http.ResponseWriter, r *http.Request) {
	rp, ok := s.passkeyParty(w, r)
	if !ok {
		return
	}
	id, ans, ok := s.ceremonyAnswer(w, r)
	if !ok {
		return
	}
	rotate, token := s.rotateOwn(w, r)
	sess, err := s.app.ReauthenticateWithPasskey(r.Context(), s.actor(r), rp, id, ans.Credential, rotate)
	if err != nil {
		s.passkeyFailed(w, r, err)
		return
	}
	out := map[string]any{"session": viewSession(sess, sess.ID), "redirect": s.safeRedirect(r, ans.RD)}
	if *token != "" {
		out["token"] = *token
	}
	writeJSON(w, http.StatusOK, out)
}

// passkeyRegisterBegin is POST /api/v1/passkeys/register/begin: the
// session must have signed in within the last 10 minutes.
func (s *Server) passkeyRegisterBegin(w http.ResponseWriter, r *http.Request) {
	rp, ok := s.passkeyParty(w, r)
	if !ok {
		return
	}
	c, err := s.app.BeginPasskeyRegistration(r.Context(), s.actor(r), session.FromContext(r.Context()).AuthenticatedAt, rp)
	if err != nil {
		s.passkeyFailed(w, r, err)
		return
	}
	beginCeremony(w, c)
}

// passkeyRegisterFinish is POST /api/v1/passkeys/register/finish
// {"credential","name"}: 201 {"passkey","redirect"}.
func (s *Server) passkeyRegisterFinish(w http.ResponseWriter, r *http.Request) {
	rp, ok := s.passkeyParty(w, r)
	if !ok {
		return
	}
	id, ans, ok := s.ceremonyAnswer(w, r)
	if !ok {
		return
	}
	p, err := s.app.FinishPasskeyRegistration(r.Context(), s.actor(r), rp, id, ans.Name, ans.Credential)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"passkey": viewPasskey(p), "redirect": "/account?done=passkey-added"})
}

// passkeyView is a passkey as the API shows it: never its public key.
type passkeyView struct {
	ID         string     `json:"id"` // the credential ID, base64url
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"` // null until first used
	// Synced says the passkey may be copied to the user's other devices
	// (backup eligible); BackedUp that it is.
	Synced   bool `json:"synced"`
	BackedUp bool `json:"backed_up"`
}

func viewPasskey(p *users.Passkey) passkeyView {
	v := passkeyView{ID: base64.RawURLEncoding.EncodeToString(p.CredentialID), Name: p.Name, CreatedAt: p.CreatedAt.UTC().Truncate(time.Second), Synced: p.BackupEligible, BackedUp: p.BackupState}
	if !p.LastUsedAt.IsZero() {
		t := p.LastUsedAt.UTC().Truncate(time.Second)
		v.LastUsedAt = &t
	}
	return v
}

// passkeyList is GET /api/v1/passkeys: {"passkeys":[…]}, oldest first.
func (s *Server) passkeyList(w http.ResponseWriter, r *http.Request) {
	list, err := s.app.MyPasskeys(r.Context(), s.actor(r))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	out := make([]passkeyView, 0, len(list))
	for _, p := range list {
		out = append(out, viewPasskey(p))
	}
	writeJSON(w, http.StatusOK, map[string][]passkeyView{"passkeys": out})
}

var errNoSuchPasskey = app.Errorf(app.CodeNotFound, "No such passkey.")

// passkeyID is the credential ID in r's path; nil if it is not base64url
// of a possible one.
func passkeyID(r *http.Request) []byte {
	id, err := base64.RawURLEncoding.DecodeString(r.PathValue("id"))
	if err != nil || users.ValidateCredentialID(id) != nil {
		return nil
	}
	return id
}

// passkeyRename is PATCH /api/v1/passkeys/{id} {"name"}: {"passkey"}.
func (s *Server) passkeyRename(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name string `json:"name"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		s.writeErr(w, r, err)
		return
	}
	id := passkeyID(r)
	if id == nil {
		writeError(w, errNoSuchPasskey)
		return
	}
	p, err := s.app.RenamePasskey(r.Context(), s.actor(r), id, body.Name)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"passkey": viewPasskey(p)})
}

// passkeyRemove is DELETE /api/v1/passkeys/{id}: {"removed":1}.
func (s *Server) passkeyRemove(w http.ResponseWriter, r *http.Request) {
	id := passkeyID(r)
	if id == nil {
		writeError(w, errNoSuchPasskey)
		return
	}
	if _, err := s.app.RemovePasskey(r.Context(), s.actor(r), id); err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"removed": 1})
}

// passkeyRow is a passkey as the account page shows it.
type passkeyRow struct {
	ID, Name   string
	CreatedAt  time.Time
	LastUsed   string // "5 minutes ago", or "" if never
	LastUsedAt time.Time
	Synced     bool
}

// passkeySection is the account page's passkeys: the list, and whether
// this browser may add one here (Available: passkeys work on this site).
type passkeySection struct {
	Rows      []passkeyRow
	Available bool
	Begin     string // the registration ceremony's routes
	Finish    string
}

// passkeySection returns the account page's passkeys for r, nil where
// the directory keeps none; script says the page must load the script.
func (s *Server) passkeySection(r *http.Request) (sec *passkeySection, script bool, err error) {
	list, err := s.app.MyPasskeys(r.Context(), s.actor(r))
	if e := app.ErrorOf(err); e != nil && e.Code == app.CodeNotFound {
		return nil, false, nil // no passkeys in this directory
	}
	if err != nil {
		return nil, false, err
	}
	_, ok := s.relyingParty(r)
	sec = &passkeySection{Available: ok, Begin: passkeyRegisterBegin, Finish: passkeyRegisterFinish}
	now := s.cfg.Now()
	for _, p := range list {
		row := passkeyRow{ID: base64.RawURLEncoding.EncodeToString(p.CredentialID), Name: p.Name, CreatedAt: p.CreatedAt, LastUsedAt: p.LastUsedAt, Synced: p.BackupEligible}
		if !p.LastUsedAt.IsZero() {
			row.LastUsed = ago(p.LastUsedAt, now)
		}
		sec.Rows = append(sec.Rows, row)
	}
	return sec, ok, nil
}

// loginPasskey is the login page's passkey button, nil where passkeys
// cannot be used.
func (s *Server) loginPasskey(r *http.Request) *passkeyButton {
	if _, ok := s.relyingParty(r); !ok {
		return nil
	}
	if _, ok := s.app.Accounts().Directory().(users.Factors); !ok {
		return nil
	}
	return &passkeyButton{Begin: passkeyLoginBegin, Finish: passkeyLoginFinish}
}

// passkeyCheck is the "Use a passkey" button of a page where a signed-in
// user proves a second factor or re-authenticates (the template
// "passkey-check"; the page sets view.Script when it is not nil): it
// checks one of the user's passkeys and raises the session (see
// passkeyReauthFinish), then goes to the form's rd. It is nil where
// passkeys cannot be used or the user has none.
func (s *Server) passkeyCheck(r *http.Request) *passkeyButton {
	if _, ok := s.relyingParty(r); !ok {
		return nil
	}
	if list, err := s.app.MyPasskeys(r.Context(), s.actor(r)); err != nil || len(list) == 0 {
		return nil
	}
	return &passkeyButton{Begin: passkeyReauthBegin, Finish: passkeyReauthFinish}
}

// passkeySecondFactor is the "Use a passkey" button of the second-factor
// page, whose user has a passkey among methods; nil where passkeys
// cannot be used.
func (s *Server) passkeySecondFactor(r *http.Request, methods []string, rd string) *passkeyButton {
	if _, ok := s.relyingParty(r); !ok || !slices.Contains(methods, app.MethodPasskey) {
		return nil
	}
	return &passkeyButton{Begin: passkeyStepBegin, Finish: passkeyStepFinish, RD: rd}
}

// passkeyButton is a button that runs a passkey sign-in or check: its
// ceremony's routes, and where to go once it is done if the button is in
// no form with an "rd" field.
type passkeyButton struct{ Begin, Finish, RD string }

// accountPasskeyRename is POST /account/passkeys/{id}/rename: name.
func (s *Server) accountPasskeyRename(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(r); err != nil {
		s.formRefused(w, r, "/account", err)
		return
	}
	id := passkeyID(r)
	if id == nil {
		s.formRefused(w, r, "/account", errNoSuchPasskey)
		return
	}
	if _, err := s.app.RenamePasskey(r.Context(), s.actor(r), id, r.PostForm.Get("name")); err != nil {
		s.formRefused(w, r, "/account", err)
		return
	}
	done(w, r, "/account", "passkey-renamed", 0)
}

// accountPasskeyRemove is POST /account/passkeys/{id}/remove, once
// confirmed.
func (s *Server) accountPasskeyRemove(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(r); err != nil {
		s.formRefused(w, r, "/account", err)
		return
	}
	id := passkeyID(r)
	if id == nil {
		s.formRefused(w, r, "/account", errNoSuchPasskey)
		return
	}
	p, err := s.app.MyPasskey(r.Context(), s.actor(r), id)
	if err != nil {
		s.formRefused(w, r, "/account", err)
		return
	}
	if r.PostForm.Get("confirm") != "yes" {
		v, err := s.signedIn(r, "Remove the passkey "+p.Name+"?", "account")
		if err != nil {
			s.pageErr(w, r, err)
			return
		}
		v.Data = confirmation{
			Question:    "Remove the passkey " + p.Name + "?",
			Consequence: "You can no longer sign in with it. The authenticator may still list it: remove it there too.",
			Button:      "Remove passkey", Action: r.URL.Path, Back: "/account",
		}
		s.render(w, http.StatusOK, "confirm.html", v)
		return
	}
	if _, err := s.app.RemovePasskey(r.Context(), s.actor(r), id); err != nil {
		if errors.Is(err, users.ErrNotFound) {
			err = errNoSuchPasskey
		}
		s.formRefused(w, r, "/account", err)
		return
	}
	done(w, r, "/account", "passkey-removed", 0)
}

// passkeyScript serves the pages' one script, which runs the WebAuthn
// ceremonies.
func passkeyScript(w http.ResponseWriter, r *http.Request) {
	js, _ := webFS.ReadFile("web/passkey.js")
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(js)
}
