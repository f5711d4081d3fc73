package app

import "slices"

// SecondFactorPolicy says which users must prove a second factor: their
// sessions count as signed in only at AAL2 (session.Session.AAL), and a
// user who has no second factor yet is led to set one up after the
// password. The zero policy requires it of nobody.
type SecondFactorPolicy struct {
	// Everyone requires a second factor of every user.
	Everyone bool
	// Roles requires it of the users holding any of these roles.
	Roles []string
}

// RequiresSecondFactor reports whether a user holding roles must prove a
// second factor.
func (a *App) RequiresSecondFactor(roles []string) bool {
	p := &a.secondFactor
	return p.Everyone || slices.ContainsFunc(p.Roles, func(r string) bool { return slices.Contains(roles, r) })
}
