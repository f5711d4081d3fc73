package sqliteoutbox_test

import (
	"path/filepath"
	"testing"

	"github.com/sessiond/sessiond/users/sqliteusers"
	"github.com/sessiond/sessiond/webhook"
	"github.com/sessiond/sessiond/webhook/outboxtest"
	"github.com/sessiond/sessiond/webhook/sqliteoutbox"
)

func TestOutbox(t *testing.T) {
	outboxtest.Run(t, outboxtest.Harness{New: func(t *testing.T) outboxtest.Env {
		path := filepath.Join(t.TempDir(), "sessiond.db")
		log, err := sqliteusers.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { log.Close() })
		return outboxtest.Env{Log: log, Open: func(t *testing.T) webhook.Outbox {
			o, err := sqliteoutbox.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { o.Close() })
			return o
		}}
	}})
}
