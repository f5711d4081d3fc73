package assertion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/sessiond/sessiond/session"
)

// MaxLifetime is the longest an assertion lives: 5 minutes, long enough
// to reuse one across many requests, short enough that one outlives the
// revocation of its session by little.
const MaxLifetime = 5 * time.Minute

// Config configures an Issuer. Zero fields mean their defaults.
type Config struct {
	// Issuer is the iss claim: sessiond's public URL. Required.
	Issuer string
	// Audience, if set, is the aud claim of every assertion. Default: the
	// audience each call names (the original request's host).
	Audience string
	// Lifetime is how long an assertion is valid (exp - iat). Default and
	// most MaxLifetime.
	Lifetime time.Duration
	// KeyLifetime is how long a key signs before the next one takes
	// over. Default 30 days.
	KeyLifetime time.Duration
	// PublishLead is how long a new key is published before it signs:
	// longer than verifiers cache the key set (JWKSMaxAge) plus
	// RefreshInterval. Default 1 hour.
	PublishLead time.Duration
	// RefreshInterval is how often an Issuer reads the keys from the
	// store, rotating them when due. Default 1 minute; at most a quarter
	// of PublishLead.
	RefreshInterval time.Duration
	// CacheSize is the most sessions whose assertions an Issuer keeps
	// for reuse, each up to 4 audiences' (about 1 KB an assertion with
	// its bookkeeping); full, a new session's takes the place of one
	// chosen at random. Default 50000 (about 50 MB at most with one
	// audience a session).
	CacheSize int
	// KeySecrets, if any, are key-encryption keys of 32 bytes each,
	// kept outside the database: the first seals the private key of
	// every key this Config makes (AES-256-GCM, the key ID as associated
	// data), and any of them opens a sealed one, so that a new secret
	// can go first while keys sealed with the old one are still in use.
	// Unsealed keys are read as they are. Default: none (private keys
	// are stored unsealed).
	KeySecrets [][]byte
	// Logger receives refresh failures and the keys an Issuer adds or
	// deletes; nil discards them.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// JWKSMaxAge is how long a verifier may cache the key set
// (Cache-Control: max-age of Issuer.JWKS's answer).
const JWKSMaxAge = 5 * time.Minute

func (c Config) withDefaults() Config {
	if c.Lifetime == 0 {
		c.Lifetime = MaxLifetime
	}
	if c.KeyLifetime == 0 {
		c.KeyLifetime = 30 * 24 * time.Hour
	}
	if c.PublishLead == 0 {
		c.PublishLead = time.Hour
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = min(time.Minute, c.PublishLead/4)
	}
	if c.CacheSize == 0 {
		c.CacheSize = 50000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports what is wrong with c, its defaults applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if u, err := url.Parse(c.Issuer); c.Issuer == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, errors.New("assertion: the issuer must be an absolute http(s) URL: set the public URL"))
	}
	if c.Audience != "" && !validAudience(c.Audience) {
		errs = append(errs, fmt.Errorf("assertion: audience %q: use a host name (app.example.com), with a port if need be, or a URL", c.Audience))
	}
	if c.Lifetime < 10*time.Second || c.Lifetime > MaxLifetime {
		errs = append(errs, fmt.Errorf("assertion: lifetime %v: use 10s to %v", c.Lifetime, MaxLifetime))
	}
	if c.PublishLead < JWKSMaxAge+2*clockSkew {
		errs = append(errs, fmt.Errorf("assertion: publish lead %v: use at least %v (the key set's cache time and clock skew)", c.PublishLead, JWKSMaxAge+2*clockSkew))
	}
	if c.RefreshInterval <= 0 || c.RefreshInterval > c.PublishLead/4 {
		errs = append(errs, fmt.Errorf("assertion: refresh interval %v: use a positive duration of at most a quarter of the publish lead", c.RefreshInterval))
	}
	if c.KeyLifetime < 2*c.PublishLead {
		errs = append(errs, fmt.Errorf("assertion: key lifetime %v: use at least twice the publish lead (%v)", c.KeyLifetime, 2*c.PublishLead))
	}
	for n, s := range c.KeySecrets {
		if len(s) != 32 {
			errs = append(errs, fmt.Errorf("assertion: key secret %d is %d bytes: use 32 random bytes", n+1, len(s)))
		}
	}
	if c.CacheSize < 0 {
		errs = append(errs, errors.New("assertion: the cache size must not be negative"))
	}
	return errors.Join(errs...)
}

func (c Config) schedule() schedule {
	return schedule{lead: c.PublishLead, keyLifetime: c.KeyLifetime, retention: MaxLifetime + clockSkew, ring: keyring{c.KeySecrets}}
}

// Errors of Issuer.Assertion.
var (
	// ErrNoKey means the Issuer cannot tell which key signs now: it has
	// not read the keys for too long (the store is unreachable).
	ErrNoKey = errors.New("assertion: no signing key is known to be current")
	// ErrAudience means the audience is not a host name.
	ErrAudience = errors.New("assertion: the audience is not a valid host name")
	// ErrExpired means the session ends within the current second: no
	// assertion can expire before it does.
	ErrExpired = errors.New("assertion: the session has expired")
)

// Issuer signs assertions with the keys of a KeyStore, which it refreshes
// in the background and rotates when due. It is safe for concurrent use;
// any number of Issuers, in any number of processes, may share a store.
type Issuer struct {
	cfg   Config
	sched schedule
	store KeyStore
	set   atomic.Pointer[keySet]
	cache *cache

	stop chan struct{}
	done chan struct{}
}

// keySet is the keys an Issuer read at loaded, with a signer for each.
type keySet struct {
	loaded  time.Time
	keys    []StoredKey // sorted by SignFrom
	signers []jose.Signer
	jwks    []byte
}

// New returns an Issuer over store, having read the keys (and made the
// first key if there is none). It refreshes them until Close.
func New(ctx context.Context, store KeyStore, cfg Config) (*Issuer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	i := &Issuer{cfg: cfg, sched: cfg.schedule(), store: store, cache: newCache(cfg.CacheSize),
		stop: make(chan struct{}), done: make(chan struct{})}
	if err := i.Refresh(ctx); err != nil {
		return nil, err
	}
	go i.run()
	return i, nil
}

// Close stops the background refresh. It does not close the KeyStore.
func (i *Issuer) Close() {
	select {
	case <-i.stop:
	default:
		close(i.stop)
	}
	<-i.done
}

func (i *Issuer) run() {
	defer close(i.done)
	t := time.NewTicker(i.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-i.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), i.cfg.RefreshInterval)
			if err := i.Refresh(ctx); err != nil {
				i.cfg.Logger.Warn("assertion keys: refresh failed", "err", err)
			}
			cancel()
		}
	}
}

// Refresh reads the keys from the store, first making the changes that
// are due (the first key, a rotation, deleting expired keys) under the
// store's lock. The background refresh calls it; tests call it to see
// another instance's change at once.
func (i *Issuer) Refresh(ctx context.Context) error {
	now := i.cfg.Now()
	keys, err := i.store.Keys(ctx)
	if err != nil {
		return err
	}
	if add, del, err := i.sched.plan(keys, now, false); err != nil {
		return err
	} else if len(add)+len(del) > 0 {
		err := i.store.Update(ctx, func(keys []StoredKey) ([]StoredKey, []string, error) {
			add, del, err = i.sched.plan(keys, i.cfg.Now(), false)
			return add, del, err
		})
		if err != nil {
			return err
		}
		for _, k := range add {
			i.cfg.Logger.Info("assertion keys: published a new key", "kid", k.ID, "signs_from", k.SignFrom)
		}
		for _, id := range del {
			i.cfg.Logger.Info("assertion keys: deleted a key whose assertions have all expired", "kid", id)
		}
		if keys, err = i.store.Keys(ctx); err != nil {
			return err
		}
	}
	set, err := i.newKeySet(keys, now)
	if err != nil {
		return err
	}
	i.set.Store(set)
	return nil
}

// newKeySet builds the signers and the published set of keys read at now.
func (i *Issuer) newKeySet(keys []StoredKey, now time.Time) (*keySet, error) {
	sortKeys(keys)
	set := &keySet{loaded: now, keys: keys}
	pub := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for n, k := range keys {
		priv, err := parseKey(k, i.sched.ring)
		if err != nil {
			return nil, err
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: k.ID}},
			(&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			return nil, err
		}
		set.signers = append(set.signers, s)
		if !i.sched.expired(keys, n, now) {
			pub.Keys = append(pub.Keys, jose.JSONWebKey{Key: &priv.PublicKey, KeyID: k.ID, Algorithm: string(jose.ES256), Use: "sig"})
		}
	}
	b, err := json.Marshal(pub)
	if err != nil {
		return nil, err
	}
	set.jwks = b
	return set, nil
}

// JWKS returns the published keys as a JWK Set (RFC 7517 §5): public keys
// only, those waiting to sign and those whose assertions may still be
// valid included. The caller must not change the bytes.
func (i *Issuer) JWKS() []byte { return i.set.Load().jwks }

// signer returns the key that signs at now and its ID, or ErrNoKey if the
// keys were read too long ago to know: a key another instance added since
// signs no sooner than PublishLead after it was added.
func (i *Issuer) signer(now time.Time) (jose.Signer, string, error) {
	set := i.set.Load()
	if !now.Before(set.loaded.Add(i.cfg.PublishLead - clockSkew)) {
		return nil, "", ErrNoKey
	}
	n := signerAt(set.keys, now)
	if n < 0 {
		return nil, "", ErrNoKey
	}
	return set.signers[n], set.keys[n].ID, nil
}

// Claims are an assertion's claims.
type Claims struct {
	Issuer            string   `json:"iss"`
	Audience          string   `json:"aud"`
	Subject           string   `json:"sub"`
	SessionID         string   `json:"sid"`
	PreferredUsername string   `json:"preferred_username"`
	Groups            []string `json:"groups"`
	AuthTime          int64    `json:"auth_time"`
	AMR               []string `json:"amr,omitempty"`
	ACR               string   `json:"acr"`
	IssuedAt          int64    `json:"iat"`
	Expiry            int64    `json:"exp"`
}

// Assertion returns an assertion about s, whose user is username, for
// audience (ignored if Config.Audience is set): a compact JWS. It reuses
// one signed earlier for the same session, token, identity and audience
// while more than half its lifetime is left (or, cut short by the
// session's expiry, until then). Its exp is never past s.ExpiresAt(). The
// caller must have checked that s is valid now.
func (i *Issuer) Assertion(s *session.Session, username, audience string) (string, error) {
	h, err := i.Header(s, username, audience)
	if err != nil {
		return "", err
	}
	return h[0], nil
}

// Header is Assertion as the value of an http.Header entry: a slice of
// one string, shared by every answer that reuses the assertion, which
// the caller must not change.
func (i *Issuer) Header(s *session.Session, username, audience string) ([]string, error) {
	if i.cfg.Audience != "" {
		audience = i.cfg.Audience
	} else if !validAudience(audience) {
		return nil, ErrAudience
	}
	now := i.cfg.Now()
	sessExp := s.ExpiresAt().Unix()
	if h := i.cache.get(s, username, audience, now.Unix(), sessExp, int64(i.cfg.Lifetime/time.Second)); h != nil {
		return h, nil
	}
	signer, _, err := i.signer(now)
	if err != nil {
		return nil, err
	}
	iat := now.Unix()
	exp := iat + int64(i.cfg.Lifetime/time.Second)
	clamped := exp >= sessExp
	if clamped {
		exp = sessExp
	}
	if exp <= iat {
		return nil, ErrExpired
	}
	groups := s.Roles
	if groups == nil {
		groups = []string{}
	}
	c := Claims{
		Issuer: i.cfg.Issuer, Audience: audience, Subject: s.UserID, SessionID: s.ID, PreferredUsername: username,
		Groups: groups, AuthTime: s.AuthenticatedAt.Unix(), AMR: s.AMR, ACR: acr(s),
		IssuedAt: iat, Expiry: exp,
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return nil, err
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return nil, err
	}
	h := []string{tok}
	i.cache.put(s, username, cacheItem{aud: audience, exp: exp, clamped: clamped, header: h})
	return h, nil
}

// acr is the acr claim of s: "aal2" for a session that proved two
// factors, else "aal1" (NIST SP 800-63B authenticator assurance levels).
func acr(s *session.Session) string {
	if s.AAL() == 2 {
		return "aal2"
	}
	return "aal1"
}

// validAudience reports whether aud is a host name, IP literal or URL of
// at most 255 bytes: letters, digits and the characters of host names,
// ports, IPv6 literals and URL paths.
func validAudience(aud string) bool {
	if aud == "" || len(aud) > 255 {
		return false
	}
	for i := 0; i < len(aud); i++ {
		c := aud[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '/' || c == '_':
		default:
			return false
		}
	}
	return true
}

// Rotate adds a new key to ks, published now and signing after cfg's
// PublishLead, which every Issuer over ks then takes up; it deletes
// expired keys too. If a key is already waiting to sign, it adds none and
// returns ErrKeyWaiting with that key.
func Rotate(ctx context.Context, ks KeyStore, cfg Config) (StoredKey, error) {
	cfg = cfg.withDefaults()
	sched := cfg.schedule()
	var added StoredKey
	var waiting bool
	err := ks.Update(ctx, func(keys []StoredKey) ([]StoredKey, []string, error) {
		now := cfg.Now()
		add, del, err := sched.plan(keys, now, true)
		if len(add) == 1 {
			added = add[0]
		} else {
			sorted := append([]StoredKey(nil), keys...)
			sortKeys(sorted)
			added, waiting = sorted[len(sorted)-1], true
		}
		return add, del, err
	})
	if err != nil {
		return StoredKey{}, err
	}
	if waiting {
		return added, ErrKeyWaiting
	}
	return added, nil
}

// cache keeps signed assertions per session for reuse.
type cache struct {
	mu      sync.RWMutex
	entries map[string]*cacheEntry // by session ID
	max     int
}

// maxAudiences is the most audiences a session's cache entry keeps: a
// session used at more hosts replaces its oldest, so one session cannot
// grow the cache.
const maxAudiences = 4

// cacheEntry is a session's reusable assertions, for the state of the
// session they were signed for. It is never changed once in the cache.
type cacheEntry struct {
	tokenHash session.Hash
	authAt    time.Time
	username  string
	roles     []string
	amr       []string
	items     []cacheItem
}

type cacheItem struct {
	aud     string
	exp     int64
	clamped bool // exp is the session's expiry
	header  []string
}

func newCache(max int) *cache { return &cache{entries: map[string]*cacheEntry{}, max: max} }

// matches reports whether e was signed for the session in the state s is.
func (e *cacheEntry) matches(s *session.Session, username string) bool {
	return e.tokenHash == s.TokenHash && e.authAt.Equal(s.AuthenticatedAt) && e.username == username &&
		equal(e.roles, s.Roles) && equal(e.amr, s.AMR)
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// get returns the header of a reusable assertion for s and aud at now
// (Unix seconds), or nil.
func (c *cache) get(s *session.Session, username, aud string, now, sessExp, lifetime int64) []string {
	c.mu.RLock()
	e := c.entries[s.ID]
	c.mu.RUnlock()
	if e == nil || !e.matches(s, username) {
		return nil
	}
	for _, it := range e.items {
		if it.aud != aud || it.exp > sessExp || now >= it.exp {
			continue
		}
		if it.exp-now > lifetime/2 || it.clamped && it.exp == sessExp {
			return it.header
		}
	}
	return nil
}

// put keeps it for s, replacing what the entry of s held for its
// audience, and the whole entry if s has changed since.
func (c *cache) put(s *session.Session, username string, it cacheItem) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.entries[s.ID]
	e := &cacheEntry{tokenHash: s.TokenHash, authAt: s.AuthenticatedAt, username: username,
		roles: append([]string(nil), s.Roles...), amr: append([]string(nil), s.AMR...)}
	e.items = append(e.items, it)
	if old != nil && old.matches(s, username) {
		for _, o := range old.items {
			if o.aud != it.aud && len(e.items) < maxAudiences {
				e.items = append(e.items, o)
			}
		}
	}
	if old == nil && len(c.entries) >= c.max {
		for k := range c.entries { // map iteration starts at random
			delete(c.entries, k)
			break
		}
	}
	c.entries[s.ID] = e
}

// Audience returns Config.Audience: the audience of every assertion, or
// "" if each call names its own.
func (i *Issuer) Audience() string { return i.cfg.Audience }
