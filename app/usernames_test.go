package app

import (
	"fmt"
	"testing"
)

// TestNameCacheBounded: the username cache never holds more than its
// bound, and what it holds is right.
func TestNameCacheBounded(t *testing.T) {
	c := newNameCache(10)
	for i := range 25 {
		id := fmt.Sprintf("u%02d", i)
		c.put(id, "name-"+id)
		if len(c.names) > 10 {
			t.Fatalf("%d names cached, bound 10", len(c.names))
		}
		if name, ok := c.get(id); !ok || name != "name-"+id {
			t.Fatalf("get(%s) = %q, %v just after put", id, name, ok)
		}
	}
	for id, name := range c.names {
		if name != "name-"+id {
			t.Errorf("%s cached as %q", id, name)
		}
	}
}
