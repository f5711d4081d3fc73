package server

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/session"
)

// policy is what a protected route asks of a session besides being valid,
// set per proxy location in /resolve's query string (DESIGN §5):
//
//	aal=2           the session's AAL is 2 (a second factor, or a passkey
//	                with user verification)
//	max_age=SECONDS the user proved who they are at most this long ago
//	role=R1,R2      the user holds at least one of these roles
//	redirect=1      refusals of browsers are 302s to the step to take, for
//	                proxies that hand the answer to the browser (Traefik,
//	                Caddy) instead of reading its Location (nginx)
//	app_cookie=1    a 200 carries a Cookie header with the request's
//	                cookies but sessiond's, for proxies that copy headers
//	                from the answer but cannot edit the Cookie header
//	                themselves (Traefik: Cookie in authResponseHeaders)
//
// The zero policy asks nothing more.
type policy struct {
	aal       int
	maxAge    time.Duration
	roles     []string
	redirect  bool
	appCookie bool
}

// Bounds of a policy. A policy is the proxy's configuration, not a
// client's input, but a proxy that passes the client's query string on
// would make it one, so what it may cost is bounded all the same.
const (
	maxPolicyQuery = 1024
	maxPolicyRoles = 32
	maxPolicyAge   = 400 * 24 * time.Hour
)

var errPolicy = errors.New("bad policy")

// maxCachedPolicies bounds policyCache: a proxy sends a handful of
// distinct policies, one per protected location.
const maxCachedPolicies = 256

// policyCache keeps parsed policies by their query string, so that a
// resolve with a policy parses nothing: the few a proxy sends are parsed
// once. Past maxCachedPolicies distinct ones (a client that can reach
// /resolve sending its own), policies are parsed each time and not kept.
// Wrong ones are never kept. The zero value is ready to use.
type policyCache struct {
	m sync.Map // raw query → policy
	n atomic.Int32
}

// get returns the policy of rawQuery (parsePolicy).
func (c *policyCache) get(rawQuery string) (policy, error) {
	if rawQuery == "" {
		return policy{}, nil
	}
	if p, ok := c.m.Load(rawQuery); ok {
		return p.(policy), nil
	}
	p, err := parsePolicy(rawQuery)
	if err == nil && c.n.Load() < maxCachedPolicies && c.n.Add(1) <= maxCachedPolicies {
		c.m.Store(rawQuery, p)
	}
	return p, err
}

// parsePolicy reads the policy in a /resolve query string. A parameter it
// does not know, one given twice, or a value out of range is an error: a
// mistyped policy must refuse every request (fail closed), not protect a
// route less than its configuration says. The empty query is the zero
// policy, at no cost.
func parsePolicy(rawQuery string) (policy, error) {
	var p policy
	if rawQuery == "" {
		return p, nil
	}
	if len(rawQuery) > maxPolicyQuery {
		return p, fmt.Errorf("%w: the query string is over %d bytes", errPolicy, maxPolicyQuery)
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return p, fmt.Errorf("%w: %v", errPolicy, err)
	}
	for name, values := range q {
		if len(values) != 1 {
			return p, fmt.Errorf("%w: %s is given %d times", errPolicy, name, len(values))
		}
		v := values[0]
		switch name {
		case "aal":
			if v != "1" && v != "2" {
				return p, fmt.Errorf("%w: aal must be 1 or 2", errPolicy)
			}
			p.aal = int(v[0] - '0')
		case "max_age":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 || time.Duration(n)*time.Second > maxPolicyAge {
				return p, fmt.Errorf("%w: max_age must be a number of seconds from 1 to %d", errPolicy, int(maxPolicyAge/time.Second))
			}
			p.maxAge = time.Duration(n) * time.Second
		case "role":
			roles := strings.Split(v, ",")
			if len(roles) > maxPolicyRoles || slices.Contains(roles, "") {
				return p, fmt.Errorf("%w: role must be 1 to %d role names, comma-separated", errPolicy, maxPolicyRoles)
			}
			p.roles = roles
		case "redirect", "app_cookie":
			if v != "1" {
				return p, fmt.Errorf("%w: %s must be 1", errPolicy, name)
			}
			if name == "redirect" {
				p.redirect = true
			} else {
				p.appCookie = true
			}
		default:
			return p, fmt.Errorf("%w: unknown parameter %q (known: aal, max_age, role, redirect, app_cookie)", errPolicy, name)
		}
	}
	return p, nil
}

// Refusals of a session that is valid but falls short of a policy.
var (
	// errNeedsSecondFactor: the route asks for AAL2 and the session is
	// AAL1. A browser is sent to the second-factor step.
	errNeedsSecondFactor = app.Errorf(app.CodeSecondFactorRequired, "This page needs a second factor: complete two-step verification.")
	// errNeedsReauth: the user proved who they are too long ago for the
	// route. A browser is sent to re-authenticate.
	errNeedsReauth = app.Errorf(app.CodeReauthRequired, "This page needs you to confirm it is you: sign in again.")
	// errLacksRole: the user holds none of the route's roles. Signing in
	// again would not help, so nobody is sent anywhere.
	errLacksRole = app.Errorf(app.CodeForbidden, "Your account does not have access to this page.")
)

// check returns nil if s meets p at now, or the refusal: a missing role
// first (no step would help), then a missing second factor, then a stale
// authentication. requireAAL2 says the user must hold AAL2 whatever the
// route asks (Config's second-factor requirement for the user's roles).
func (p *policy) check(s *session.Session, requireAAL2 bool, now time.Time) *app.Error {
	if p.roles != nil && !slices.ContainsFunc(p.roles, func(r string) bool { return slices.Contains(s.Roles, r) }) {
		return errLacksRole
	}
	if (p.aal == 2 || requireAAL2) && s.AAL() < 2 {
		return errNeedsSecondFactor
	}
	if p.maxAge > 0 && now.Sub(s.AuthenticatedAt) > p.maxAge {
		return errNeedsReauth
	}
	return nil
}
