package app

import (
	"context"
	"sync"
)

// Username returns the username of user id, from a cache: usernames never
// change. It is what the resolve path and the session events name a user
// by.
func (a *App) Username(ctx context.Context, id string) (string, error) {
	if name, ok := a.usernames.get(id); ok {
		return name, nil
	}
	u, err := a.accounts.Directory().ByID(ctx, id)
	if err != nil {
		return "", err
	}
	a.usernames.put(id, u.Username)
	return u.Username, nil
}

// maxUsernames bounds the usernames an App keeps in memory, so that a
// directory of millions of users costs it a bounded amount.
const maxUsernames = 100_000

// nameCache maps user IDs to usernames. Full, it starts afresh: cheaper
// than an LRU, and each name is back after one lookup.
type nameCache struct {
	mu    sync.RWMutex
	names map[string]string
	max   int
}

func newNameCache(max int) *nameCache {
	return &nameCache{names: map[string]string{}, max: max}
}

func (c *nameCache) get(id string) (string, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	name, ok := c.names[id]
	return name, ok
}

func (c *nameCache) put(id, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.names) >= c.max {
		clear(c.names)
	}
	c.names[id] = name
}
