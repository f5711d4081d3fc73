package redisstore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Defaults of the URL options (see the package doc).
const (
	DefaultKeyPrefix = "sessiond:"
	DefaultCacheTTL  = time.Minute
	DefaultTimeout   = 2 * time.Second
)

// WaitReplicasAuto is the wait_replicas option's default, "auto": wait
// for one replica if a master has a replica connected when Open runs,
// else for none (see "Operating Redis" in the package doc).
const WaitReplicasAuto = -1

// CacheMode, the cache= URL option, says how ByHash uses the client-side
// cache. "Client-side cache" in docs/stores/redis.md says how each mode
// works and what it costs.
type CacheMode string

const (
	// CacheFenced serves records from the cache only after a round trip
	// that proves every invalidation sent before it has been applied: a
	// revocation acknowledged anywhere is never served from the cache.
	CacheFenced CacheMode = "fenced"
	// CacheUnsafeUnfenced serves records from the cache with no round trip at
	// all. A revocation reaches the cache when its invalidation message
	// arrives, normally well under a millisecond after Redis acknowledged
	// it; until then another instance may still serve the session.
	CacheUnsafeUnfenced CacheMode = "unsafe-unfenced"
	// CacheOff reads every record from Redis.
	CacheOff CacheMode = "off"
)

// options is a parsed URL.
type options struct {
	client   rueidis.ClientOption
	cluster  bool
	prefix   string
	cache    CacheMode
	cacheTTL time.Duration
	timeout  time.Duration
	// waitReplicas is how many replicas a change that ends or narrows a
	// session must reach (WaitReplicasAuto: decided at Open);
	// waitTimeout how long WAIT waits for them (0: half of timeout).
	waitReplicas int
	waitTimeout  time.Duration
}

// parseURL parses a store URL (see the package doc) into options.
func parseURL(raw string) (*options, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, errors.New("redisstore: the URL must start with redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://")
	}
	o := &options{prefix: DefaultKeyPrefix, cache: CacheFenced, cacheTTL: DefaultCacheTTL, timeout: DefaultTimeout, waitReplicas: WaitReplicasAuto}
	useTLS := false
	mode := ""
	switch strings.ToLower(scheme) {
	case "redis":
	case "rediss":
		useTLS = true
	case "redis+sentinel":
		mode = "sentinel"
	case "rediss+sentinel":
		mode, useTLS = "sentinel", true
	case "redis+cluster":
		mode = "cluster"
	case "rediss+cluster":
		mode, useTLS = "cluster", true
	default:
		return nil, fmt.Errorf("redisstore: unknown URL scheme %q: use redis, rediss, redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster", scheme)
	}

	authority, pathQuery := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority, pathQuery = rest[:i], rest[i:]
	}
	path, query, _ := strings.Cut(pathQuery, "?")
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		user, pass, hasPass := strings.Cut(authority[:i], ":")
		var err error
		if o.client.Username, err = url.PathUnescape(user); err != nil {
			return nil, fmt.Errorf("redisstore: user name in URL: %w", err)
		}
		if hasPass {
			if o.client.Password, err = url.PathUnescape(pass); err != nil {
				return nil, errors.New("redisstore: password in URL: invalid %-escape")
			}
		}
		authority = authority[i+1:]
	}
	defaultPort := "6379"
	if mode == "sentinel" {
		defaultPort = "26379"
	}
	var hosts []string
	if authority != "" {
		hosts = strings.Split(authority, ",")
	}
	if len(hosts) == 0 {
		return nil, errors.New("redisstore: the URL names no host")
	}
	if len(hosts) > 1 && mode == "" {
		return nil, fmt.Errorf("redisstore: %s:// takes one host; list several with redis+sentinel:// or redis+cluster://", scheme)
	}
	for _, h := range hosts {
		addr, err := hostPort(h, defaultPort)
		if err != nil {
			return nil, err
		}
		o.client.InitAddress = append(o.client.InitAddress, addr)
	}

	switch path = strings.TrimPrefix(path, "/"); {
	case path == "":
	case mode == "cluster":
		return nil, errors.New("redisstore: Redis Cluster has only database 0: remove the path from the URL")
	default:
		db, err := strconv.Atoi(path)
		if err != nil || db < 0 {
			return nil, fmt.Errorf("redisstore: the URL path must be a database number, not %q", path)
		}
		o.client.SelectDB = db
	}

	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("redisstore: URL query: %w", err)
	}
	var caFile, serverName string
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "prefix":
			if strings.ContainsAny(v, "{}") {
				return nil, fmt.Errorf("redisstore: prefix %q: a key prefix must not contain { or }, which Redis Cluster reads as a hash tag", v)
			}
			o.prefix = v
		case "cache":
			switch m := CacheMode(v); m {
			case CacheFenced, CacheUnsafeUnfenced, CacheOff:
				o.cache = m
			default:
				return nil, fmt.Errorf("redisstore: cache=%q: use fenced (the default), off or unsafe-unfenced", v)
			}
		case "cache_ttl":
			if o.cacheTTL, err = positiveDuration(k, v); err != nil {
				return nil, err
			}
		case "timeout":
			if o.timeout, err = positiveDuration(k, v); err != nil {
				return nil, err
			}
		case "wait_replicas":
			if v == "auto" {
				o.waitReplicas = WaitReplicasAuto
				break
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 100 {
				return nil, fmt.Errorf("redisstore: wait_replicas=%q: want auto (the default), 0 (never wait) or a number of replicas", v)
			}
			o.waitReplicas = n
		case "wait_timeout":
			if o.waitTimeout, err = positiveDuration(k, v); err != nil {
				return nil, err
			}
		case "master":
			if mode != "sentinel" {
				return nil, errors.New("redisstore: master= is for redis+sentinel:// URLs")
			}
			o.client.Sentinel.MasterSet = v
		case "sentinel_username", "sentinel_password":
			if mode != "sentinel" {
				return nil, fmt.Errorf("redisstore: %s= is for redis+sentinel:// URLs", k)
			}
			if k == "sentinel_username" {
				o.client.Sentinel.Username = v
			} else {
				o.client.Sentinel.Password = v
			}
		case "ca_file", "server_name":
			if !useTLS {
				return nil, fmt.Errorf("redisstore: %s= needs TLS: use a rediss scheme", k)
			}
			if k == "ca_file" {
				caFile = v
			} else {
				serverName = v
			}
		case "client_name":
			o.client.ClientName = v
		default:
			return nil, fmt.Errorf("redisstore: unknown URL option %q (known: prefix, cache, cache_ttl, timeout, wait_replicas, wait_timeout, master, sentinel_username, sentinel_password, ca_file, server_name, client_name)", k)
		}
	}
	if mode == "sentinel" && o.client.Sentinel.MasterSet == "" {
		return nil, errors.New("redisstore: a redis+sentinel:// URL needs ?master=NAME, the name the sentinels monitor the master under")
	}
	o.cluster = mode == "cluster"
	switch {
	case o.waitTimeout == 0:
		o.waitTimeout = o.timeout / 2
	case o.waitTimeout >= o.timeout:
		return nil, fmt.Errorf("redisstore: wait_timeout=%v is not shorter than timeout=%v, which bounds the whole operation: lower wait_timeout or raise timeout", o.waitTimeout, o.timeout)
	}

	if useTLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
		if cfg.ServerName == "" && mode == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(o.client.InitAddress[0])
		}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return nil, fmt.Errorf("redisstore: ca_file: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("redisstore: ca_file %s holds no PEM certificate", caFile)
			}
		}
		o.client.TLSConfig = cfg
		if mode == "sentinel" {
			o.client.Sentinel.TLSConfig = cfg.Clone()
		}
	}
	return o, nil
}

// hostPort returns h as host:port, with port def if h has none.
func hostPort(h, def string) (string, error) {
	if h == "" {
		return "", errors.New("redisstore: empty host in URL")
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port: a bare name or address, IPv6 in brackets or not.
		host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), def
	}
	if host == "" {
		return "", fmt.Errorf("redisstore: no host in %q", h)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", fmt.Errorf("redisstore: invalid port in %q", h)
	}
	return net.JoinHostPort(host, port), nil
}

func positiveDuration(name, v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("redisstore: %s=%q: want a positive duration such as 500ms or 2s", name, v)
	}
	return d, nil
}
