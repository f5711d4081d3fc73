package server

import (
	"html/template"
	"net/http"
	"strconv"
	"strings"

	"github.com/sessiond/sessiond/app"
)

// The account page's "Two-step verification" section and its pages: TOTP
// enrolment (a QR code the server draws as inline SVG, and the secret as
// text), its confirmation and removal, and recovery codes, shown once. Like
// every page they need no script, and every form posts to a route behind
// the session middleware's cross-origin check. The pages that show a
// secret or codes are answered with Cache-Control: no-store, as every page
// is (render).

// totpData is the TOTP enrolment page's data.
type totpData struct {
	Secret string // base32, in groups of four for reading
	URL    string
	QR     template.HTML
}

// accountTOTPPage is GET /account/totp: the pending enrolment's QR code and
// secret, and the form that confirms it with a first code. Without a
// pending enrolment it goes back to /account.
func (s *Server) accountTOTPPage(w http.ResponseWriter, r *http.Request) {
	e, err := s.app.PendingTOTP(r.Context(), s.actor(r))
	if err != nil {
		s.formRefused(w, r, "/account", err)
		return
	}
	v, err := s.signedIn(r, "Set up two-step verification", "account")
	if err != nil {
		s.pageErr(w, r, err)
		return
	}
	v.Data = totpData{Secret: groups(e.Secret, 4), URL: e.URL, QR: qrSVG(e.QR)}
	s.render(w, http.StatusOK, "totp.html", v)
}

// accountBeginTOTP is POST /account/totp: a new pending enrolment, shown
// by GET /account/totp.
func (s *Server) accountBeginTOTP(w http.ResponseWriter, r *http.Request) {
	if _, err := s.app.BeginTOTP(r.Context(), s.actor(r)); err != nil {
		s.formRefused(w, r, "/account", err)
		return
	}
	http.Redirect(w, r, "/account/totp", http.StatusSeeOther)
}

// accountConfirmTOTP is POST /account/totp/confirm: code. A wrong code
// goes back to the enrolment page with the error.
func (s *Server) accountConfirmTOTP(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(r); err != nil {
		s.formRefused(w, r, "/account/totp", err)
		return
	}
	rotate, _ := s.rotateOwn(w, r)
	if _, err := s.app.ConfirmTOTP(r.Context(), s.actor(r), r.PostForm.Get("code"), rotate); err != nil {
		s.formRefused(w, r, "/account/totp", err)
		return
	}
	done(w, r, "/account", "totp-enabled", 0)
}

// accountDisableTOTP is POST /account/totp/disable: code, a current TOTP
// code or a recovery code (none for a pending enrolment).
func (s *Server) accountDisableTOTP(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(r); err != nil {
		s.formRefused(w, r, "/account", err)
		return
	}
	if err := s.app.DisableTOTP(r.Context(), s.actor(r), r.PostForm.Get("code")); err != nil {
		s.formRefused(w, r, "/account", err)
		return
	}
	done(w, r, "/account", "totp-disabled", 0)
}

// recoveryData is the recovery codes page's data.
type recoveryData struct {
	Codes []string
}

// accountRecoveryCodes is POST /account/recovery-codes: a new set of
// recovery codes, which voids the previous one, shown on the page this
// answer is and nowhere else (no redirect: a GET could not show them
// again, since only their hashes are kept).
func (s *Server) accountRecoveryCodes(w http.ResponseWriter, r *http.Request) {
	codes, err := s.app.NewRecoveryCodes(r.Context(), s.actor(r))
	if isCode(err, app.CodeSecondFactorRequired) {
		http.Redirect(w, r, s.stepURL("/login/second-factor", "/account#recovery"), http.StatusSeeOther)
		return
	}
	if err != nil {
		s.formRefused(w, r, "/account", err)
		return
	}
	v, err := s.signedIn(r, "Your recovery codes", "account")
	if err != nil {
		s.pageErr(w, r, err)
		return
	}
	v.Data = recoveryData{Codes: codes}
	s.render(w, http.StatusOK, "recovery_codes.html", v)
}

// adminResetFactorsForm is POST /admin/users/{user}/second-factors/reset,
// once confirmed: every second factor of the user goes, and so do their
// sessions.
func (s *Server) adminResetFactorsForm(w http.ResponseWriter, r *http.Request) {
	if !s.confirmFirst(w, r, func(name string) confirmation {
		return confirmation{
			Question:    "Reset the two-step verification of " + name + "?",
			Consequence: "This removes " + name + "'s authenticator app, recovery codes and passkeys, and signs " + name + " out everywhere. They sign in with their password alone and can set up two-step verification again. Do this only once you are sure who asked.",
			Button:      "Reset two-step verification",
		}
	}) {
		return
	}
	u, n, err := s.app.ResetSecondFactors(r.Context(), s.actor(r), r.PathValue("user"))
	s.changed(w, r, "second-factors-reset", u, n, err)
}

// groups splits s into groups of n characters separated by spaces.
func groups(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s); i += n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s[i:min(i+n, len(s))])
	}
	return b.String()
}

// qrQuiet is the light margin around a QR code, in modules, that scanners
// need (ISO/IEC 18004 asks for 4).
const qrQuiet = 4

// qrSVG draws a QR code's modules (true for dark) as an inline SVG
// element: one path of unit squares on a light square. It is built from
// the modules and numbers only, so it is safe as template.HTML.
func qrSVG(rows [][]bool) template.HTML {
	n := len(rows)
	size := strconv.Itoa(n + 2*qrQuiet)
	var path strings.Builder
	for y, row := range rows {
		for x := 0; x < len(row); x++ {
			if !row[x] {
				continue
			}
			run := 1 // a horizontal run of dark modules is one rectangle
			for x+run < len(row) && row[x+run] {
				run++
			}
			path.WriteString("M" + strconv.Itoa(x+qrQuiet) + " " + strconv.Itoa(y+qrQuiet) + "h" + strconv.Itoa(run) + "v1h-" + strconv.Itoa(run) + "z")
			x += run - 1
		}
	}
	return template.HTML(`<svg class="qr" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ` + size + ` ` + size +
		`" width="240" height="240" shape-rendering="crispEdges" role="img" aria-label="QR code to scan with your authenticator app">` +
		`<rect width="` + size + `" height="` + size + `" fill="#fff"/><path fill="#000" d="` + path.String() + `"/></svg>`)
}
