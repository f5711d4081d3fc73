package app

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/memstore"
	"github.com/sessiond/sessiond/store/pgstore"
	"github.com/sessiond/sessiond/store/redisstore"
	"github.com/sessiond/sessiond/store/sqlitestore"
	"github.com/sessiond/sessiond/users"
	"github.com/sessiond/sessiond/users/pgusers"
	"github.com/sessiond/sessiond/users/sqliteusers"
)

// Directory is where accounts, their second factors and the audit log
// are kept: one storage holds them all, and old events can be deleted
// (--audit-retention).
type Directory interface {
	users.Directory
	users.Factors
	audit.Log
	audit.Pruner
}

// Stores are the storage an instance works on: the sessions, and the
// accounts with the audit log.
type Stores struct {
	Sessions  session.Store
	Directory Directory
	closers   []func() error
}

// Close closes every store.
func (s *Stores) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	return errors.Join(errs...)
}

// StoreURL is a parsed store location.
type StoreURL struct {
	// Kind is "sqlite", "memory", "postgres" or "redis".
	Kind string
	// Path is the file for sqlite, the whole URL otherwise.
	Path string
}

// ParseStoreURL parses a store location: sqlite:PATH, memory:,
// postgres://… (or postgresql://…), or redis://…, rediss://…,
// redis+sentinel://…, redis+cluster://…. The error names no password.
func ParseStoreURL(s string) (StoreURL, error) {
	scheme, rest, ok := strings.Cut(s, ":")
	switch {
	case ok && scheme == "sqlite" && rest != "":
		return StoreURL{Kind: "sqlite", Path: rest}, nil
	case ok && scheme == "memory" && rest == "":
		return StoreURL{Kind: "memory"}, nil
	case ok && (scheme == "postgres" || scheme == "postgresql") && strings.HasPrefix(rest, "//"):
		return StoreURL{Kind: "postgres", Path: s}, nil
	case ok && (scheme == "redis" || scheme == "rediss" || scheme == "redis+sentinel" || scheme == "redis+cluster") && strings.HasPrefix(rest, "//"):
		return StoreURL{Kind: "redis", Path: s}, nil
	}
	return StoreURL{}, fmt.Errorf("%q: use sqlite:PATH, postgres://..., redis://... (rediss://, redis+sentinel://, redis+cluster://) or memory:", RedactURL(s))
}

// DatabaseURL returns the URL of the database a session store URL names,
// without the session store's own parameters (a PostgreSQL store's cache
// settings): what the accounts, and what else shares that database, open.
func DatabaseURL(storeURL string) string {
	if st, err := ParseStoreURL(storeURL); err == nil && st.Kind == "postgres" {
		return pgstore.DatabaseURL(storeURL)
	}
	return storeURL
}

// OpenStores opens the session store at storeURL and the accounts and
// audit log at usersURL (sqlite:PATH or postgres://…; "" means the
// session store's database, which must then be one of those). Close the
// Stores when done. Errors name no password.
func OpenStores(ctx context.Context, storeURL, usersURL string) (*Stores, error) {
	st, err := ParseStoreURL(storeURL)
	if err != nil {
		return nil, fmt.Errorf("session store %w", err)
	}
	if usersURL == "" {
		usersURL = DatabaseURL(storeURL)
	}
	ut, err := ParseStoreURL(usersURL)
	if err == nil && (ut.Kind == "memory" || ut.Kind == "redis") {
		err = fmt.Errorf("%q: accounts are kept in sqlite:PATH or postgres://...", RedactURL(usersURL))
	}
	if err != nil {
		return nil, fmt.Errorf("user directory %w", err)
	}
	s := &Stores{}
	if err := s.open(ctx, st, ut); err != nil {
		return nil, errors.Join(redactErr(err, storeURL, usersURL), s.Close())
	}
	return s, nil
}

func (s *Stores) open(ctx context.Context, st, ut StoreURL) error {
	switch st.Kind {
	case "memory":
		s.Sessions = memstore.New()
	case "sqlite":
		db, err := sqlitestore.Open(st.Path)
		if err != nil {
			return err
		}
		s.Sessions, s.closers = db, append(s.closers, db.Close)
	case "postgres":
		db, err := pgstore.Open(ctx, st.Path)
		if err != nil {
			return err
		}
		s.Sessions, s.closers = db, append(s.closers, func() error { db.Close(); return nil })
	case "redis":
		db, err := redisstore.Open(ctx, st.Path)
		if err != nil {
			return err
		}
		s.Sessions, s.closers = db, append(s.closers, func() error { db.Close(); return nil })
	}
	switch ut.Kind {
	case "sqlite":
		d, err := sqliteusers.Open(ut.Path)
		if err != nil {
			return err
		}
		s.Directory, s.closers = d, append(s.closers, d.Close)
	case "postgres":
		d, err := pgusers.Open(ctx, ut.Path)
		if err != nil {
			return err
		}
		s.Directory, s.closers = d, append(s.closers, func() error { d.Close(); return nil })
	}
	return nil
}

// RedactURL returns s with any password in it replaced by "xxxxx": the
// user-info password of a URL (postgres://u:pw@h, redis://:pw@h), and
// password= parameters (in a query, or a PostgreSQL key=value string).
// Use it wherever a store location is logged or shown.
func RedactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			s = u.String()
		}
	} else if err != nil {
		s = userinfoPassword.ReplaceAllString(s, "${1}xxxxx@")
	}
	return passwordParam.ReplaceAllString(s, "${1}xxxxx")
}

var (
	// passwordParam matches the value of a password parameter: in a URL
	// query (?password=, &sentinel_password=) or a key=value string.
	passwordParam = regexp.MustCompile(`(?i)((?:^|[?&\s;])[a-z_]*password\s*=\s*)('[^']*'|[^&\s;]*)`)
	// userinfoPassword matches the password of a URL url.Parse refused.
	userinfoPassword = regexp.MustCompile(`(//[^/:@]*:)[^@/]*@`)
)

// redactErr returns err with every password in the store URLs taken out
// of its text, in case a driver quotes its connection string.
func redactErr(err error, urls ...string) error {
	msg := err.Error()
	changed := false
	for _, u := range urls {
		if r := RedactURL(u); r != u && strings.Contains(msg, u) {
			msg, changed = strings.ReplaceAll(msg, u, r), true
		}
		if pw := urlPassword(u); pw != "" && strings.Contains(msg, pw) {
			msg, changed = strings.ReplaceAll(msg, pw, "xxxxx"), true
		}
	}
	if !changed {
		return err
	}
	return errors.New(msg)
}

// urlPassword is the user-info password of u, if any.
func urlPassword(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return ""
	}
	pw, _ := p.User.Password()
	return pw
}
