package redisstore

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		url     string
		addrs   []string
		user    string
		pass    string
		db      int
		master  string
		cluster bool
		tls     bool
		prefix  string
		cache   CacheMode
		ttl     time.Duration
		timeout time.Duration
		waitN   int           // 0 in the table means auto
		waitT   time.Duration // 0 in the table means half of timeout
	}{
		{url: "redis://localhost", addrs: []string{"localhost:6379"}},
		{url: "redis://127.0.0.1:6380/2", addrs: []string{"127.0.0.1:6380"}, db: 2},
		{url: "redis://:s%40cret@host/", addrs: []string{"host:6379"}, pass: "s@cret"},
		{url: "redis://app:p@ss@host:1", addrs: []string{"host:1"}, user: "app", pass: "p@ss"},
		{url: "redis://[::1]:7000", addrs: []string{"[::1]:7000"}},
		{url: "redis://[::1]", addrs: []string{"[::1]:6379"}},
		{url: "rediss://redis.example:6380/0", addrs: []string{"redis.example:6380"}, tls: true},
		{url: "redis+sentinel://s1,s2:26380/1?master=mymaster", addrs: []string{"s1:26379", "s2:26380"}, db: 1, master: "mymaster"},
		{url: "redis+cluster://a:7000,b:7001,c", addrs: []string{"a:7000", "b:7001", "c:6379"}, cluster: true},
		{url: "rediss+cluster://a:7000", addrs: []string{"a:7000"}, cluster: true, tls: true},
		{url: "redis://h?prefix=app1:&cache=off&cache_ttl=10s&timeout=500ms", addrs: []string{"h:6379"},
			prefix: "app1:", cache: CacheOff, ttl: 10 * time.Second, timeout: 500 * time.Millisecond},
		{url: "redis://h/?cache=unsafe-unfenced", addrs: []string{"h:6379"}, cache: CacheUnsafeUnfenced},
		{url: "redis://h?wait_replicas=2&wait_timeout=250ms", addrs: []string{"h:6379"}, waitN: 2, waitT: 250 * time.Millisecond},
		{url: "redis://h?timeout=300ms&wait_replicas=auto", addrs: []string{"h:6379"}, timeout: 300 * time.Millisecond, waitT: 150 * time.Millisecond},
		{url: "redis://h?wait_replicas=0", addrs: []string{"h:6379"}, waitN: -2},
	}
	for _, tt := range tests {
		o, err := parseURL(tt.url)
		if err != nil {
			t.Errorf("parseURL(%q): %v", tt.url, err)
			continue
		}
		if tt.prefix == "" {
			tt.prefix = DefaultKeyPrefix
		}
		if tt.cache == "" {
			tt.cache = CacheFenced
		}
		if tt.ttl == 0 {
			tt.ttl = DefaultCacheTTL
		}
		if tt.timeout == 0 {
			tt.timeout = DefaultTimeout
		}
		switch tt.waitN {
		case 0:
			tt.waitN = WaitReplicasAuto
		case -2:
			tt.waitN = 0
		}
		if tt.waitT == 0 {
			tt.waitT = tt.timeout / 2
		}
		if o.waitReplicas != tt.waitN || o.waitTimeout != tt.waitT {
			t.Errorf("parseURL(%q): wait_replicas %d, wait_timeout %v; want %d, %v", tt.url, o.waitReplicas, o.waitTimeout, tt.waitN, tt.waitT)
		}
		c := o.client
		if !slices.Equal(c.InitAddress, tt.addrs) || c.Username != tt.user || c.Password != tt.pass || c.SelectDB != tt.db ||
			c.Sentinel.MasterSet != tt.master || o.cluster != tt.cluster || (c.TLSConfig != nil) != tt.tls ||
			o.prefix != tt.prefix || o.cache != tt.cache || o.cacheTTL != tt.ttl || o.timeout != tt.timeout {
			t.Errorf("parseURL(%q):\ngot  addrs %q user %q pass %q db %d master %q cluster %v tls %v prefix %q cache %s ttl %v timeout %v\nwant addrs %q user %q pass %q db %d master %q cluster %v tls %v prefix %q cache %s ttl %v timeout %v",
				tt.url, c.InitAddress, c.Username, c.Password, c.SelectDB, c.Sentinel.MasterSet, o.cluster, c.TLSConfig != nil, o.prefix, o.cache, o.cacheTTL, o.timeout,
				tt.addrs, tt.user, tt.pass, tt.db, tt.master, tt.cluster, tt.tls, tt.prefix, tt.cache, tt.ttl, tt.timeout)
		}
	}
	if o, _ := parseURL("rediss://redis.example:6380"); o.client.TLSConfig.ServerName != "redis.example" {
		t.Errorf("rediss:// verifies the server as %q, want redis.example", o.client.TLSConfig.ServerName)
	}
}

func TestParseURLErrors(t *testing.T) {
	for url, want := range map[string]string{
		"localhost:6379":                       "must start with",
		"memcached://h":                        "unknown URL scheme",
		"redis://":                             "no host",
		"redis://a,b":                          "takes one host",
		"redis://h/x":                          "database number",
		"redis://h:99999":                      "invalid port",
		"redis+cluster://h/1":                  "only database 0",
		"redis+sentinel://h":                   "master=NAME",
		"redis://h?master=m":                   "for redis+sentinel",
		"redis://h?prefix={x}":                 "must not contain",
		"redis://h?cache=yes":                  "use fenced",
		"redis://h?timeout=0s":                 "positive duration",
		"redis://h?cache_ttl=soon":             "positive duration",
		"redis://h?ca_file=/ca.pem":            "needs TLS",
		"redis://h?prefx=a":                    "unknown URL option",
		"rediss://h?ca_file=/nonexistent":      "ca_file",
		"redis://h?sentinel_password=x":        "for redis+sentinel",
		"redis://:%zz@h":                       "password",
		"redis+sentinel://h?master=m&db=1":     "unknown URL option",
		"redis://h?wait_replicas=all":          "wait_replicas",
		"redis://h?wait_replicas=-1":           "wait_replicas",
		"redis://h?wait_timeout=0":             "positive duration",
		"redis://h?wait_timeout=2s":            "not shorter than timeout",
		"redis://h?timeout=1s&wait_timeout=1s": "not shorter than timeout",
	} {
		_, err := parseURL(url)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseURL(%q): got %v, want an error containing %q", url, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "%zz") {
			t.Errorf("parseURL(%q): the error shows the password: %v", url, err)
		}
	}
}
