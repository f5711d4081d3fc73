package session

import "slices"

// Authentication method references (RFC 8176) that sessiond records in
// Session.AMR.
const (
	// AMRPassword: a password.
	AMRPassword = "pwd"
	// AMROTP: a one-time code (TOTP, or a single-use recovery code).
	AMROTP = "otp"
	// AMRHardwareKey: proof of possession of a hardware-bound key (a
	// passkey that cannot be copied off its device).
	AMRHardwareKey = "hwk"
	// AMRSoftwareKey: proof of possession of a software-secured key (a
	// passkey synced between devices).
	AMRSoftwareKey = "swk"
	// AMRUserPresence: the authenticator checked that a user was present
	// and verified them (a passkey's PIN or biometric).
	AMRUserPresence = "user"
	// AMRMultiFactor: more than one factor was proven. Session.AAL is 2
	// exactly when AMR holds it.
	AMRMultiFactor = "mfa"
)

// MergeAMR returns amr with the methods of add appended, each once, and
// AMRMultiFactor added when the result proves something the user knows
// (AMRPassword) and something they have (AMROTP, AMRHardwareKey or
// AMRSoftwareKey). A caller whose single authenticator is multi-factor (a
// passkey with user verification) passes AMRMultiFactor itself. amr is
// not modified.
func MergeAMR(amr []string, add ...string) []string {
	out := slices.Clone(amr)
	for _, m := range add {
		if m != "" && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	knows := slices.Contains(out, AMRPassword)
	has := slices.ContainsFunc(out, func(m string) bool {
		return m == AMROTP || m == AMRHardwareKey || m == AMRSoftwareKey
	})
	if knows && has && !slices.Contains(out, AMRMultiFactor) {
		out = append(out, AMRMultiFactor)
	}
	return out
}
