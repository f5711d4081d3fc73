package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sessiond/sessiond/app"
)

// options is every setting of sessiond, one flag each. Each flag can also
// be set with the environment variable SESSIOND_<NAME> (upper case, "-"
// as "_") or a line "name = value" in the file named by --config; a flag
// on the command line beats the environment, which beats the file.
type options struct {
	config             string
	listen             string
	store              string
	users              string
	idleTimeout        time.Duration
	absoluteTimeout    time.Duration
	rememberMeTimeout  time.Duration
	maxSessionsPerUser int
	rejectAtLimit      bool
	cookieName         string
	cookieDomain       string
	cookieSameSite     string
	devInsecureCookie  bool
	trustedProxies     string
	publicURL          string
	tlsCert, tlsKey    string
	upstream           string
	internalListen     string
	grpcListen         string
	storeTimeout       time.Duration
	shutdownTimeout    time.Duration
	auditRetention     time.Duration
	// requireSecondFactor and requireSecondFactorFor (comma-separated
	// roles) say who must prove a second factor (app.SecondFactorPolicy).
	requireSecondFactor    bool
	requireSecondFactorFor string
	// assertion turns X-Session-Assertion on (server.Config.Assertions).
	assertion            bool
	assertionAudience    string
	assertionKeyLifetime time.Duration
	// assertionKeySecretFile holds the key-encryption keys
	// (assertion.Config.KeySecrets).
	assertionKeySecretFile string
	logFormat              string
	logLevel               string
	// webhooks are the --webhook values ("URL" or "URL whsec_…"), and
	// webhookSecret the secret of those without one (see webhookHooks).
	webhooks           stringList
	webhookSecret      string
	webhookMaxAttempts int
	webhookMaxAge      time.Duration
	webhookTimeout     time.Duration
	// set holds the names of the flags given a value on the command
	// line, in the environment or in the config file.
	set map[string]bool
}

// defaultInternalListen is where the internal endpoints (/resolve,
// /healthz, /readyz, /metrics) are served in upstream mode unless
// --internal-listen says otherwise: loopback only, one port above
// --listen's default.
const defaultInternalListen = "127.0.0.1:8081"

// defaultDataDir is where the embedded store lives unless told otherwise.
const defaultDataDir = "sessiond-data"

// defaultAuditRetention is how long the audit log keeps an event unless
// told otherwise: 90 days. That is long enough to look into an incident
// noticed weeks after the fact, and it is the window identity services
// commonly keep online (Okta's System Log, AWS CloudTrail's event history)
// and the part of the log PCI DSS v4.0 (requirement 10.5.1) wants
// immediately available; PCI DSS asks for twelve months in all, so where a
// regime asks for more, raise it or ship the log to an archive. It is not
// forever because events hold IP addresses and user agents, personal data
// that data-protection law (GDPR article 5(1)(e), storage limitation) says
// not to keep longer than needed, and because a log that only grows
// slows its queries and fills the disk.
const defaultAuditRetention = 90 * 24 * time.Hour

func (o *options) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.config, "config", "", "read settings from this `file` (lines of name = value)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "`address` to serve HTTP on")
	fs.StringVar(&o.store, "store", "sqlite:"+filepath.Join(defaultDataDir, "sessiond.db"), "session `store`: sqlite:PATH, postgres://..., redis://... (rediss://, redis+sentinel://, redis+cluster://) or memory:")
	fs.StringVar(&o.users, "users", "", "user directory and audit log (`URL`): sqlite:PATH or postgres://... (default: the --store database, or "+defaultDataDir+"/sessiond.db)")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 30*time.Minute, "end sessions unused for this long")
	fs.DurationVar(&o.absoluteTimeout, "absolute-timeout", 12*time.Hour, "end sessions this long after login")
	fs.DurationVar(&o.rememberMeTimeout, "remember-me-timeout", 30*24*time.Hour, "absolute timeout of \"remember me\" sessions")
	fs.IntVar(&o.maxSessionsPerUser, "max-sessions-per-user", 100, "most sessions one user may hold (-1: no limit)")
	fs.BoolVar(&o.rejectAtLimit, "reject-at-limit", false, "refuse logins at the limit instead of ending the oldest session")
	fs.StringVar(&o.cookieName, "cookie-name", "__Host-sid", "session cookie `name`")
	fs.StringVar(&o.cookieDomain, "cookie-domain", "", "share the cookie with subdomains of this `domain` (not with a __Host- name)")
	fs.StringVar(&o.cookieSameSite, "cookie-samesite", "lax", "cookie SameSite (`mode`): lax, strict or none")
	fs.BoolVar(&o.devInsecureCookie, "dev-insecure-cookie", false, "DEVELOPMENT ONLY: drop the cookie's Secure flag so it travels over plain HTTP (needs a --cookie-name without __Host-)")
	fs.StringVar(&o.trustedProxies, "trusted-proxies", "", "comma-separated IPs or CIDRs (`list`) of proxies whose X-Forwarded-For, X-Original-URL and X-Forwarded-Proto/Host/Uri are believed (loopback peers always are)")
	fs.StringVar(&o.publicURL, "public-url", "", "`URL` users reach sessiond at, for login redirects (default: from each request)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with this certificate `file` (PEM); sends HSTS")
	fs.StringVar(&o.tlsKey, "tls-key", "", "private key `file` for --tls-cert (PEM)")
	fs.StringVar(&o.upstream, "upstream", "", "act as the authenticating reverse proxy for this app `URL`")
	fs.StringVar(&o.internalListen, "internal-listen", "", "serve /resolve, /healthz, /readyz and /metrics on this `address`, and not on --listen (default with --upstream: "+defaultInternalListen+"; else none: they are on --listen)")
	fs.StringVar(&o.grpcListen, "grpc-listen", "", "answer Envoy's ext_authz checks over gRPC (envoy.service.auth.v3.Authorization, plain, with grpc.health.v1) on this `address`, e.g. 127.0.0.1:9001 (default: none)")
	fs.DurationVar(&o.storeTimeout, "store-timeout", 2*time.Second, "longest wait for the stores when authenticating a request; then 503")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT or SIGTERM, wait this long for in-flight requests, then cut them off (a second signal stops at once)")
	fs.DurationVar(&o.auditRetention, "audit-retention", defaultAuditRetention, "delete audit events older than this (0: keep them forever)")
	fs.BoolVar(&o.requireSecondFactor, "require-second-factor", false, "every user must sign in with a second factor (TOTP or a passkey); users without one are led to set one up after the password")
	fs.StringVar(&o.requireSecondFactorFor, "require-second-factor-for", "", "users holding any of these comma-separated `roles` must sign in with a second factor, e.g. admin")
	fs.Var(&o.webhooks, "webhook", "POST every audit event to this `URL`, signed (Standard Webhooks); repeatable; in the config file \"webhook = URL whsec_...\" gives a hook a secret of its own")
	fs.StringVar(&o.webhookSecret, "webhook-secret", "", "`secret` (whsec_...) that signs the --webhook messages without one of their own; prefer SESSIOND_WEBHOOK_SECRET or the config file to the command line (make one with `sessiond webhook-secret`)")
	fs.IntVar(&o.webhookMaxAttempts, "webhook-max-attempts", 15, "attempts to deliver an event to a webhook before giving up on it (a dead letter, retried from the admin console)")
	fs.DurationVar(&o.webhookMaxAge, "webhook-max-age", 72*time.Hour, "give up on delivering an event to a webhook this long after it happened")
	fs.DurationVar(&o.webhookTimeout, "webhook-timeout", 10*time.Second, "longest wait for a webhook to answer one delivery; a delivery in flight when an instance dies is retried by another after 3 times this")
	fs.BoolVar(&o.assertion, "assertion", false, "sign an X-Session-Assertion JWT (ES256) into /resolve answers and upstream requests, with keys at /.well-known/jwks.json (needs --public-url, the issuer)")
	fs.StringVar(&o.assertionAudience, "assertion-audience", "", "the aud claim (`host`) of every assertion, e.g. app.example.com (default: the host of each original request)")
	fs.DurationVar(&o.assertionKeyLifetime, "assertion-key-lifetime", 30*24*time.Hour, "rotate the assertion signing key this often")
	fs.StringVar(&o.assertionKeySecretFile, "assertion-key-secret-file", "", "seal the signing keys' private keys in the database with the first secret in this `file` (lines of 32 bytes in base64: openssl rand -base64 32); any secret in it opens them (default: stored unsealed)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log `format`: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
}

// parseOptions parses args, flags and positional arguments in any order,
// with the environment and config file beneath. extra, if not nil, adds
// command-specific flags. Every error names the flag (and the variable or
// the file line it came from) and says what the value should look like; a
// mistake on the command line is a *usageError.
func parseOptions(name string, args []string, getenv func(string) string, stderr io.Writer, extra func(*flag.FlagSet)) (*options, []string, error) {
	o := &options{set: map[string]bool{}}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	o.flags(fs)
	if extra != nil {
		extra(fs)
	}
	var lastErr error
	fs.VisitAll(func(f *flag.Flag) { f.Value = &checkedValue{Value: f.Value, name: f.Name, err: &lastErr} })
	var positional []string
	for {
		lastErr = nil
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, nil, err
			}
			return nil, nil, &usageError{cmd: strings.TrimPrefix(name, "sessiond "), msg: flagError(fs, err, lastErr)}
		}
		if fs.NArg() == 0 {
			break
		}
		positional, args = append(positional, fs.Arg(0)), fs.Args()[1:]
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true; o.set[f.Name] = true })
	if !onCommandLine["config"] {
		if v := getenv("SESSIOND_CONFIG"); v != "" {
			o.config = v
		}
	}
	if o.config != "" {
		if err := applyFile(fs, o.config, onCommandLine, o.set); err != nil {
			return nil, nil, err
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := envName(f.Name)
		if v := getenv(env); v != "" && !onCommandLine[f.Name] && f.Name != "config" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", env, v, err))
			}
			o.set[f.Name] = true
		}
	})
	return o, positional, errors.Join(errs...)
}

// envName is the environment variable that sets the flag name:
// SESSIOND_ and the name in upper case, "-" as "_".
func envName(name string) string {
	return "SESSIOND_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// usageError is a mistake in how a command was called (an unknown
// command or flag, a bad flag value, a missing argument): Main answers it
// with exit code 2 and a pointer to the command's help.
type usageError struct {
	// cmd is the command whose help to point to ("users add"), or "".
	cmd string
	msg string
}

func (e *usageError) Error() string { return e.msg }

// checkedValue is a flag.Value whose Set failures name the flag and say
// what a valid value looks like, as in
// `--idle-timeout: "abc" is not a duration (e.g. 30m)`. The flag package
// words command-line failures its own way, so the last failure is also
// kept in *err for parseOptions to report instead.
type checkedValue struct {
	flag.Value
	name string
	err  *error
}

func (v *checkedValue) Set(s string) error {
	if err := v.Value.Set(s); err != nil {
		e := fmt.Errorf("--%s: %q is not %s", v.name, s, expected(v.Value))
		*v.err = e
		return e
	}
	return nil
}

// IsBoolFlag reports whether the flag takes no value (--reject-at-limit
// rather than --reject-at-limit=true), as the flag it wraps does.
func (v *checkedValue) IsBoolFlag() bool {
	b, ok := v.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// expected words what a value of v's type looks like.
func expected(v flag.Value) string {
	g, ok := v.(flag.Getter)
	if !ok {
		return "a valid value"
	}
	switch g.Get().(type) {
	case time.Duration:
		return "a duration (e.g. 30m, 12h or 1h30m)"
	case int:
		return "a whole number (e.g. 100)"
	case bool:
		return "true or false"
	}
	return "a valid value"
}

// flagError words a failure of fs.Parse: valueErr if a value was refused,
// else the flag package's complaint said with "--" and, for an unknown
// flag, the nearest known one.
func flagError(fs *flag.FlagSet, err, valueErr error) string {
	if valueErr != nil {
		return valueErr.Error()
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		name = strings.TrimLeft(name, "-")
		return "unknown flag --" + name + didYouMean(name, flagNames(fs))
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return "--" + strings.TrimLeft(name, "-") + " needs a value"
	}
	return msg
}

// flagNames lists the flags of fs.
func flagNames(fs *flag.FlagSet) []string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

// didYouMean is "; did you mean --x?" for the name in known closest to
// name, if it is within two edits or a third of name's length, else "".
func didYouMean(name string, known []string) string {
	best, bestDist := "", max(2, len(name)/3)+1
	for _, k := range known {
		if d := editDistance(name, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return "; did you mean --" + best + "?"
}

// editDistance is the Levenshtein distance between a and b, counting
// bytes ("_" for "-" is one edit each).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// applyFile sets the flags named in the config file at path, except those
// given on the command line, and marks each one it sets in set.
func applyFile(fs *flag.FlagSet, path string, skip, set map[string]bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name, value = strings.TrimSpace(name), strings.Trim(strings.TrimSpace(value), `"`)
		if !ok {
			return fmt.Errorf("%s:%d: want `name = value` (a flag name without --), got %q", path, n, app.RedactURL(line))
		}
		if name == "config" {
			return fmt.Errorf("%s:%d: a config file cannot name another one", path, n)
		}
		if fs.Lookup(name) == nil {
			return fmt.Errorf("%s:%d: unknown setting %q%s", path, n, strings.TrimLeft(name, "-"), didYouMean(strings.TrimLeft(name, "-"), flagNames(fs)))
		}
		if skip[name] {
			continue
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("%s:%d: %v", path, n, err)
		}
		set[name] = true
	}
	return sc.Err()
}

// proxies parses --trusted-proxies.
func (o *options) proxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(o.trustedProxies, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies: %q is not an IP address or CIDR prefix", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// internalAddr is where the internal endpoints are served apart from
// --listen: --internal-listen, or with --upstream defaultInternalListen;
// "" if they are served on --listen.
func (o *options) internalAddr() string {
	if o.internalListen == "" && o.upstream != "" {
		return defaultInternalListen
	}
	return o.internalListen
}

// parseURL parses an absolute http(s) URL flag value.
func parseURL(flagName, s string) (*url.URL, error) {
	if s == "" {
		return nil, nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--%s %q: want an absolute http:// or https:// URL", flagName, s)
	}
	return u, nil
}
