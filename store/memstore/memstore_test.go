package memstore

import (
	"fmt"
	"testing"

	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/session/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(*testing.T) session.Store { return New() },
		Raw: func(t *testing.T, st session.Store) []byte {
			m := st.(*Store)
			m.mu.RLock()
			defer m.mu.RUnlock()
			var raw []byte
			for _, s := range m.byID {
				raw = fmt.Appendf(raw, "%+v %s %s\n", *s, s.TokenHash[:], s.PrevTokenHash[:])
			}
			return raw
		},
	})
}
