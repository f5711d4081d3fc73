package pgstore

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// options are the Store's own parameters of the connection URL (see
// Cache in the package doc), which Open takes out before it connects.
type options struct {
	cache      bool
	maxEntries int
	maxBytes   int
}

// Defaults of cache_entries and cache_bytes.
const (
	defaultCacheEntries = 100_000
	defaultCacheBytes   = 64 << 20
)

// takeOptions removes the Store's own parameters from params (the
// runtime parameters pgx parsed from the URL, which it would otherwise
// send to the server) and returns them.
func takeOptions(params map[string]string) (options, error) {
	o := options{cache: true, maxEntries: defaultCacheEntries, maxBytes: defaultCacheBytes}
	take := func(key string) (string, bool) {
		v, ok := params[key]
		delete(params, key)
		return v, ok
	}
	if v, ok := take("cache"); ok {
		switch v {
		case "on":
		case "off":
			o.cache = false
		default:
			return o, fmt.Errorf("cache=%q: want on or off", v)
		}
	}
	if v, ok := take("cache_entries"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1<<30 {
			return o, fmt.Errorf("cache_entries=%q: want a whole number from 1 to %d", v, 1<<30)
		}
		o.maxEntries = n
	}
	if v, ok := take("cache_bytes"); ok {
		n, err := parseBytes(v)
		if err != nil {
			return o, fmt.Errorf("cache_bytes=%q: %w", v, err)
		}
		o.maxBytes = n
	}
	return o, nil
}

// parseBytes reads a size: a whole number of bytes, optionally followed
// by KiB, MiB or GiB, from 4 KiB to 64 GiB.
func parseBytes(v string) (int, error) {
	unit := 1
	for _, u := range []struct {
		suffix string
		n      int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if s, ok := strings.CutSuffix(v, u.suffix); ok {
			v, unit = s, u.n
			break
		}
	}
	n, err := strconv.Atoi(v)
	const lo, hi = 4 << 10, 64 << 30
	if err != nil || n < 1 || n > hi/unit || n*unit < lo {
		return 0, fmt.Errorf("want a size from 4KiB to 64GiB (bytes, or a number with KiB, MiB or GiB)")
	}
	return n * unit, nil
}

// DatabaseURL returns the connection URL u without the Store's own
// parameters (cache, cache_entries, cache_bytes): the URL of the database
// itself, for other components that share it, whose driver would send
// those parameters to the server, which refuses them. A u that is not a
// URL is returned as it is.
func DatabaseURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.RawQuery == "" {
		return u
	}
	q := p.Query()
	for _, k := range []string{"cache", "cache_entries", "cache_bytes"} {
		q.Del(k)
	}
	p.RawQuery = q.Encode()
	return p.String()
}
