package server

import (
	"net/http"

	"github.com/sessiond/sessiond/users"
)

// The second-factor API (DESIGN §5, "Stronger sign-in"): the user's own
// TOTP enrolment and recovery codes, and an admin's reset. Codes travel
// in JSON bodies only, never in a URL, so no log line holds one.

// factorsView is what second factors a user has, as the API shows it.
type factorsView struct {
	TOTP          bool `json:"totp"`
	Passkeys      int  `json:"passkeys"`
	RecoveryCodes int  `json:"recovery_codes"`
}

func viewFactors(s users.FactorSummary) *factorsView {
	return &factorsView{TOTP: s.TOTP, Passkeys: s.Passkeys, RecoveryCodes: s.RecoveryCodes}
}

// myFactors is GET /api/v1/mfa: what second factors the user has.
func (s *Server) myFactors(w http.ResponseWriter, r *http.Request) {
	sum, err := s.app.Factors(r.Context(), s.actor(r))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewFactors(sum))
}

// beginTOTP is POST /api/v1/mfa/totp: a new TOTP secret, pending until
// confirmed, as 201 {"secret","otpauth_url"}.
func (s *Server) beginTOTP(w http.ResponseWriter, r *http.Request) {
	e, err := s.app.BeginTOTP(r.Context(), s.actor(r))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"secret": e.Secret, "otpauth_url": e.URL})
}

// codeRequest is the body that carries a second-factor code.
type codeRequest struct {
	Code string `json:"code"`
}

// confirmTOTP is POST /api/v1/mfa/totp/confirm {"code"}: the first code
// from the authenticator turns TOTP on, and raises this session to AAL2
// with a new token (a cookie, or for a bearer client "token" in the
// answer). It answers the user's factors, with "session".
func (s *Server) confirmTOTP(w http.ResponseWriter, r *http.Request) {
	var req codeRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.writeErr(w, r, err)
		return
	}
	actor := s.actor(r)
	rotate, token := s.rotateOwn(w, r)
	sess, err := s.app.ConfirmTOTP(r.Context(), actor, req.Code, rotate)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	sum, err := s.app.Factors(r.Context(), actor)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	body := map[string]any{"totp": sum.TOTP, "passkeys": sum.Passkeys, "recovery_codes": sum.RecoveryCodes, "session": viewSession(sess, sess.ID)}
	if *token != "" {
		body["token"] = *token
	}
	writeJSON(w, http.StatusOK, body)
}

// disableTOTP is DELETE /api/v1/mfa/totp {"code"}: a current TOTP code or
// a recovery code turns TOTP off. A pending enrolment is dropped without
// a body. It answers the user's factors.
func (s *Server) disableTOTP(w http.ResponseWriter, r *http.Request) {
	var req codeRequest
	if r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
		if err := decodeJSON(w, r, &req); err != nil {
			s.writeErr(w, r, err)
			return
		}
	}
	if err := s.app.DisableTOTP(r.Context(), s.actor(r), req.Code); err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.myFactors(w, r)
}

// newRecoveryCodes is POST /api/v1/mfa/recovery-codes: a new set of
// recovery codes, which voids the previous one, as 201 {"codes":[…]}.
// They are shown this once.
func (s *Server) newRecoveryCodes(w http.ResponseWriter, r *http.Request) {
	codes, err := s.app.NewRecoveryCodes(r.Context(), s.actor(r))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string][]string{"codes": codes})
}

// adminResetFactors is POST /api/v1/admin/users/{user}/second-factors/reset:
// every second factor of the user goes, and so do their sessions.
func (s *Server) adminResetFactors(w http.ResponseWriter, r *http.Request) {
	u, n, err := s.app.ResetSecondFactors(r.Context(), s.actor(r), r.PathValue("user"))
	s.answerChange(w, r, u, n, err)
}
