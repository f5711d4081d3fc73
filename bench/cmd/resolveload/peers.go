package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/gob"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/sessiond/sessiond/session"
	sessiondmem "github.com/sessiond/sessiond/store/memstore"
)

// The keys of a peer case's session data.
const (
	keyUserID          = "user_id"
	keyUsername        = "username"
	keyRoles           = "roles"
	keySessionID       = "session_id"
	keyAuthenticatedAt = "authenticated_at"
	keyAMR             = "amr"
)

func init() {
	// scs encodes a session's values with encoding/gob, which must know
	// every concrete type stored in an interface that is not one of its
	// basic types.
	gob.Register(time.Time{})
}

// newSCS returns an scs session manager on store, set up as sessiond's
// defaults where scs has the same setting: the cookie's name, a lifetime
// of sessiond's absolute timeout, and only a hash of the token in the
// store (scs's HashTokenInStore, SHA-256, as sessiond keeps it). It has no
// idle timeout, scs's default: with one, LoadAndSave writes every session
// back to the store on every request (to move its idle deadline), and the
// peer cases measure the read path, as the sessiond cases do.
func newSCS(store scs.Store) (*scs.SessionManager, error) {
	m, err := session.New(sessiondmem.New(), session.Config{})
	if err != nil {
		return nil, err
	}
	def := m.Config()
	sm := scs.New()
	sm.Store = store
	sm.Lifetime = def.AbsoluteTimeout
	sm.IdleTimeout = 0
	sm.HashTokenInStore = true
	sm.Cookie.Name = def.Cookie.Name
	sm.Cookie.Secure = true
	return sm, nil
}

// scsHandler answers /resolve as sessiond does, through
// github.com/alexedwards/scs/v2: its LoadAndSave middleware and getters,
// on be's scs store holding n sessions shaped as sessiondHandler's
// (sessionsPerUser per user; user ID, username and roles, and the public
// session ID and time of sign-in that the answer's headers need), made
// through be.peerLoad. For a valid session it answers 200 with the
// headers /resolve sends, set through http.Header.Set as an application
// writes them (and scs's own Vary: Cookie); without one, 401 with a JSON
// error. It returns the cookies naming the sessions.
func scsHandler(be *backend, n int) (http.Handler, []string, error) {
	ctx := context.Background()
	sm, err := newSCS(be.peer)
	if err != nil {
		return nil, nil, err
	}
	h := sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		userID := sm.GetString(ctx, keyUserID)
		if userID == "" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintln(w, `{"error":{"code":"unauthenticated","message":"Sign in to continue."}}`)
			return
		}
		roles, _ := sm.Get(ctx, keyRoles).([]string)
		// Without an idle timeout a session ends at its deadline.
		expires := sm.Deadline(ctx).UTC().Format(time.RFC3339)
		h := w.Header()
		h.Set("Remote-User", sm.GetString(ctx, keyUsername))
		h.Set("Remote-Groups", strings.Join(roles, ","))
		h.Set("X-User-Id", userID)
		h.Set("X-Session-Id", sm.GetString(ctx, keySessionID))
		h.Set("X-Session-Expires-At", expires)
		h.Set("X-Session-Absolute-Expires-At", expires)
		h.Set("X-Session-Authenticated-At", sm.GetTime(ctx, keyAuthenticatedAt).UTC().Format(time.RFC3339))
		h.Set("X-Session-Aal", "1")
		h.Set("X-Session-Amr", sm.GetString(ctx, keyAMR))
		h.Set("Cache-Control", "no-store")
	}))

	loader, err := newSCS(be.peerLoad)
	if err != nil {
		return nil, nil, err
	}
	nUsers := max(1, n/sessionsPerUser)
	cookies := make([]string, n)
	start := time.Now()
	authenticatedAt := time.Now().UTC().Truncate(time.Second)
	errs := make([]error, be.loaders)
	var wg sync.WaitGroup
	for g := range be.loaders {
		wg.Go(func() {
			for i := g; i < n; i += be.loaders {
				tok, err := createSCSSession(ctx, loader, i%nUsers, authenticatedAt)
				if err != nil {
					errs[g] = fmt.Errorf("creating session %d: %w", i, err)
					return
				}
				cookies[i] = sm.Cookie.Name + "=" + tok
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(os.Stderr, "resolveload: %d scs sessions in %v\n", n, time.Since(start).Round(time.Millisecond))
	if err := be.loaded(); err != nil {
		return nil, nil, err
	}

	// Resolve every session once, as sessiondHandler does: it checks the
	// setup and warms the store as the first minutes of traffic would.
	for i := range n {
		r := httptest.NewRequest(http.MethodGet, "/resolve", nil)
		r.Header.Set("Cookie", cookies[i])
		r.Header.Set("User-Agent", userAgent)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK || w.Header().Get("Remote-User") == "" {
			return nil, nil, fmt.Errorf("resolve of scs session %d: status %d, Remote-User %q", i, w.Code, w.Header().Get("Remote-User"))
		}
	}
	return h, cookies, nil
}

// createSCSSession creates a session of user number u in sm's store, as
// an application would at sign-in, and returns its token.
func createSCSSession(ctx context.Context, sm *scs.SessionManager, u int, authenticatedAt time.Time) (string, error) {
	ctx, err := sm.Load(ctx, "")
	if err != nil {
		return "", err
	}
	var id [16]byte
	rand.Read(id[:])
	sm.Put(ctx, keyUserID, fmt.Sprintf("u_load%06d", u))
	sm.Put(ctx, keyUsername, fmt.Sprintf("user%06d", u))
	sm.Put(ctx, keyRoles, []string{"member"})
	sm.Put(ctx, keySessionID, base64.RawURLEncoding.EncodeToString(id[:]))
	sm.Put(ctx, keyAuthenticatedAt, authenticatedAt)
	sm.Put(ctx, keyAMR, session.AMRPassword)
	tok, _, err := sm.Commit(ctx)
	return tok, err
}
