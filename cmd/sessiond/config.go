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
	storeTimeout       time.Duration
	shutdownTimeout    time.Duration
	auditRetention     time.Duration
	logFormat          string
	logLevel           string
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
	fs.StringVar(&o.config, "config", "", "read settings from this file (lines of `name = value`)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to serve HTTP on")
	fs.StringVar(&o.store, "store", "sqlite:"+filepath.Join(defaultDataDir, "sessiond.db"), "session store: sqlite:PATH, postgres://..., redis://... (rediss://, redis+sentinel://, redis+cluster://) or memory:")
	fs.StringVar(&o.users, "users", "", "user directory and audit log: sqlite:PATH or postgres://... (default: the --store database, or "+defaultDataDir+"/sessiond.db)")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 30*time.Minute, "end sessions unused for this long")
	fs.DurationVar(&o.absoluteTimeout, "absolute-timeout", 12*time.Hour, "end sessions this long after login")
	fs.DurationVar(&o.rememberMeTimeout, "remember-me-timeout", 30*24*time.Hour, "absolute timeout of \"remember me\" sessions")
	fs.IntVar(&o.maxSessionsPerUser, "max-sessions-per-user", 100, "most sessions one user may hold (-1: no limit)")
	fs.BoolVar(&o.rejectAtLimit, "reject-at-limit", false, "refuse logins at the limit instead of ending the oldest session")
	fs.StringVar(&o.cookieName, "cookie-name", "__Host-sid", "session cookie name")
	fs.StringVar(&o.cookieDomain, "cookie-domain", "", "share the cookie with subdomains of this domain (not with a __Host- name)")
	fs.StringVar(&o.cookieSameSite, "cookie-samesite", "lax", "cookie SameSite: lax, strict or none")
	fs.BoolVar(&o.devInsecureCookie, "dev-insecure-cookie", false, "DEVELOPMENT ONLY: drop the cookie's Secure flag so it travels over plain HTTP (needs a --cookie-name without __Host-)")
	fs.StringVar(&o.trustedProxies, "trusted-proxies", "", "comma-separated IPs or CIDRs of proxies whose X-Forwarded-For, X-Original-URL and X-Forwarded-Proto/Host/Uri are believed (loopback peers always are)")
	fs.StringVar(&o.publicURL, "public-url", "", "URL users reach sessiond at, for login redirects (default: from each request)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM); sends HSTS")
	fs.StringVar(&o.tlsKey, "tls-key", "", "private key for --tls-cert (PEM)")
	fs.StringVar(&o.upstream, "upstream", "", "act as the authenticating reverse proxy for this app URL")
	fs.StringVar(&o.internalListen, "internal-listen", "", "serve /resolve, /healthz, /readyz and /metrics on this address, and not on --listen (default with --upstream: "+defaultInternalListen+"; else none: they are on --listen)")
	fs.DurationVar(&o.storeTimeout, "store-timeout", 2*time.Second, "longest wait for the stores when authenticating a request; then 503")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT or SIGTERM, wait this long for in-flight requests, then cut them off (a second signal stops at once)")
	fs.DurationVar(&o.auditRetention, "audit-retention", defaultAuditRetention, "delete audit events older than this (0: keep them forever)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// parseOptions parses args, flags and positional arguments in any order,
// with the environment and config file beneath. extra, if not nil, adds
// command-specific flags.
func parseOptions(name string, args []string, getenv func(string) string, stderr io.Writer, extra func(*flag.FlagSet)) (*options, []string, error) {
	o := &options{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.flags(fs)
	if extra != nil {
		extra(fs)
	}
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		positional, args = append(positional, fs.Arg(0)), fs.Args()[1:]
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	if !onCommandLine["config"] {
		if v := getenv("SESSIOND_CONFIG"); v != "" {
			o.config = v
		}
	}
	if o.config != "" {
		if err := applyFile(fs, o.config, onCommandLine); err != nil {
			return nil, nil, err
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := "SESSIOND_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && !onCommandLine[f.Name] && f.Name != "config" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", env, v, err))
			}
		}
	})
	return o, positional, errors.Join(errs...)
}

// applyFile sets the flags named in the config file at path, except those
// given on the command line.
func applyFile(fs *flag.FlagSet, path string, skip map[string]bool) error {
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
		if !ok || fs.Lookup(name) == nil || name == "config" {
			return fmt.Errorf("%s:%d: want `name = value` with a flag name, got %q", path, n, app.RedactURL(line))
		}
		if skip[name] {
			continue
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("%s:%d: %s: %v", path, n, name, err)
		}
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
