package server

import (
	"net/http"
	"slices"
	"time"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/users"
)

// sessionRow is a session as the pages show it.
type sessionRow struct {
	ID                    string
	Device                string // browser and OS, from the user agent
	IP                    string
	CreatedAt, LastSeenAt time.Time
	LastActive            string // "5 minutes ago"
	Current               bool   // the session of the request
	Remember              bool
	// SignedInWith says how the user proved who they are ("Password and
	// code"), "" if the session records nothing; AAL2 marks two-step
	// sessions.
	SignedInWith string
	AAL2         bool
}

// signedInWith names, for people, how a session's user proved who they
// are, from its AMR (RFC 8176): "" if it records nothing.
func signedInWith(amr []string) string {
	has := func(m string) bool { return slices.Contains(amr, m) }
	key := has(session.AMRHardwareKey) || has(session.AMRSoftwareKey)
	switch {
	case has(session.AMRPassword) && has(session.AMROTP):
		return "Password and code"
	case has(session.AMRPassword) && key:
		return "Password and passkey"
	case key:
		return "Passkey"
	case has(session.AMRPassword):
		return "Password"
	}
	return ""
}

// sessionRows returns list as the pages show it: the session currentID
// first, then the most recently used.
func (s *Server) sessionRows(list []*session.Session, currentID string) []sessionRow {
	now := s.cfg.Now()
	rows := make([]sessionRow, 0, len(list))
	for _, x := range list {
		rows = append(rows, sessionRow{
			ID: x.ID, Device: parseDevice(x.LastUserAgent).String(), IP: x.LastIP,
			CreatedAt: x.CreatedAt, LastSeenAt: x.LastSeenAt, LastActive: ago(x.LastSeenAt, now),
			Current: x.ID == currentID, Remember: x.Remember,
			SignedInWith: signedInWith(x.AMR), AAL2: x.AAL() >= 2,
		})
	}
	slices.SortStableFunc(rows, func(a, b sessionRow) int {
		if a.Current != b.Current {
			if a.Current {
				return -1
			}
			return 1
		}
		return b.LastSeenAt.Compare(a.LastSeenAt)
	})
	return rows
}

// sessionTable is a table of sessions with a button per row that posts
// to Action + ID + "/revoke".
type sessionTable struct {
	Rows           []sessionRow
	Action, Button string
}

// accountData is the account page's data.
type accountData struct {
	Sessions sessionTable
	Others   int // sessions other than this one
	// Passkeys is the passkeys section, nil where the directory keeps
	// none.
	Passkeys *passkeySection
	// Factors are the user's second factors; TOTPPending says a TOTP
	// enrolment waits for its first code.
	Factors     users.FactorSummary
	TOTPPending bool
}

// accountPage is GET /account: where the user is signed in, and their
// password.
func (s *Server) accountPage(w http.ResponseWriter, r *http.Request) {
	v, err := s.signedIn(r, "Your account", "account")
	actor := s.actor(r)
	var (
		list    []*session.Session
		factors users.FactorSummary
		pending bool
	)
	if err == nil {
		list, err = s.app.MySessions(r.Context(), actor)
	}
	if err == nil {
		factors, err = s.app.Factors(r.Context(), actor)
	}
	if err == nil && !factors.TOTP {
		pending, err = s.app.TOTPPending(r.Context(), actor)
	}
	if err != nil {
		s.pageErr(w, r, err)
		return
	}
	rows := s.sessionRows(list, session.FromContext(r.Context()).ID)
	pk, script, err := s.passkeySection(r)
	if err != nil {
		s.pageErr(w, r, err)
		return
	}
	v.Data = accountData{Sessions: sessionTable{rows, "/account/sessions/", "Sign out"}, Others: len(rows) - 1, Factors: factors, TOTPPending: pending, Passkeys: pk}
	v.Script = script
	s.render(w, http.StatusOK, "account.html", v)
}

// parseForm reads a form post's body.
func parseForm(r *http.Request) error {
	if !isForm(r) {
		return app.Errorf(app.CodeUnsupportedMedia, "Send the form as application/x-www-form-urlencoded.")
	}
	if err := r.ParseForm(); err != nil {
		return app.Errorf(app.CodeBadRequest, "The form could not be read.")
	}
	return nil
}

// accountRevoke is POST /account/sessions/{id}/revoke: sign out one of
// the user's sessions. Signing out this one ends at the login page.
func (s *Server) accountRevoke(w http.ResponseWriter, r *http.Request) {
	self, err := s.signOut(w, r, r.PathValue("id"))
	switch {
	case err != nil:
		s.formRefused(w, r, "/account", err)
	case self:
		http.Redirect(w, r, "/login?done=signed-out", http.StatusSeeOther)
	default:
		done(w, r, "/account", "signed-out", 1)
	}
}

// accountRevokeOthers is POST /account/sessions/revoke-others.
func (s *Server) accountRevokeOthers(w http.ResponseWriter, r *http.Request) {
	n, err := s.app.SignOutOthers(r.Context(), s.actor(r))
	if err != nil {
		s.pageErr(w, r, err)
		return
	}
	done(w, r, "/account", "signed-out-others", n)
}

// accountPassword is POST /account/password: current_password,
// new_password and confirm_password. It signs the user out everywhere
// else and gives this browser a new cookie. A refusal goes back to
// /account with its error (formErrors), so the browser's URL stays there.
func (s *Server) accountPassword(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(r); err != nil {
		s.formRefused(w, r, "/account", err)
		return
	}
	f := r.PostForm
	if f.Get("new_password") != f.Get("confirm_password") {
		backWithError(w, r, "/account", "password-mismatch")
		return
	}
	_, _, n, err := s.setOwnPassword(w, r, f.Get("current_password"), f.Get("new_password"))
	if err != nil {
		s.formRefused(w, r, "/account", err)
		return
	}
	done(w, r, "/account", "password", n)
}
