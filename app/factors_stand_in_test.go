package app_test

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/sessiond/sessiond/users"
	"github.com/sessiond/sessiond/users/sqliteusers"
)

// factorsDir is db with the passkeys and challenges of users.Factors kept
// in memory beside it.
func factorsDir(db *sqliteusers.DB) users.Directory {
	return &memFactors{DB: db, challenges: map[string]*users.Challenge{}}
}

type memFactors struct {
	*sqliteusers.DB
	users.Factors // the methods below are the ones passkeys use
	mu            sync.Mutex
	keys          []*users.Passkey
	challenges    map[string]*users.Challenge
}

func (m *memFactors) AddPasskey(ctx context.Context, p *users.Passkey) error {
	if err := users.ValidatePasskey(p); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, k := range m.keys {
		if bytes.Equal(k.CredentialID, p.CredentialID) {
			return users.ErrExists
		}
		if k.UserID == p.UserID {
			n++
		}
	}
	if n >= users.MaxPasskeys {
		return users.ErrInvalid
	}
	c := *p
	m.keys = append(m.keys, &c)
	return nil
}

func (m *memFactors) Passkeys(ctx context.Context, userID string) ([]*users.Passkey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*users.Passkey
	for _, k := range m.keys {
		if k.UserID == userID {
			c := *k
			out = append(out, &c)
		}
	}
	return out, nil
}

func (m *memFactors) PasskeyByID(ctx context.Context, id []byte) (*users.Passkey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range m.keys {
		if bytes.Equal(k.CredentialID, id) {
			c := *k
			return &c, nil
		}
	}
	return nil, users.ErrNotFound
}

func (m *memFactors) UsePasskey(ctx context.Context, id []byte, count uint32, backup bool, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range m.keys {
		if bytes.Equal(k.CredentialID, id) {
			k.SignCount, k.BackupState, k.LastUsedAt = count, backup, at
			return nil
		}
	}
	return users.ErrNotFound
}

func (m *memFactors) RenamePasskey(ctx context.Context, userID string, id []byte, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range m.keys {
		if bytes.Equal(k.CredentialID, id) && k.UserID == userID {
			k.Name = name
			return nil
		}
	}
	return users.ErrNotFound
}

func (m *memFactors) DeletePasskey(ctx context.Context, userID string, id []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.IndexFunc(m.keys, func(k *users.Passkey) bool { return bytes.Equal(k.CredentialID, id) && k.UserID == userID })
	if i < 0 {
		return users.ErrNotFound
	}
	m.keys = slices.Delete(m.keys, i, i+1)
	return nil
}

func (m *memFactors) PutChallenge(ctx context.Context, c *users.Challenge) error {
	if err := users.ValidateChallenge(c); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.challenges[c.ID]; ok {
		return users.ErrExists
	}
	cp := *c
	m.challenges[c.ID] = &cp
	return nil
}

func (m *memFactors) Challenge(ctx context.Context, id, kind string) (*users.Challenge, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.challenges[id]
	if !ok || c.Kind != kind || time.Now().After(c.ExpiresAt) {
		return nil, users.ErrNotFound
	}
	cp := *c
	return &cp, nil
}

func (m *memFactors) TakeChallenge(ctx context.Context, id, kind string) (*users.Challenge, error) {
	c, err := m.Challenge(ctx, id, kind)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.challenges[id]; !ok {
		return nil, users.ErrNotFound
	}
	delete(m.challenges, id)
	return c, nil
}
