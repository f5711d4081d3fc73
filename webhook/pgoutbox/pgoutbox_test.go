package pgoutbox_test

import (
	"context"
	"testing"

	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/users/pgusers"
	"github.com/sessiond/sessiond/webhook"
	"github.com/sessiond/sessiond/webhook/outboxtest"
	"github.com/sessiond/sessiond/webhook/pgoutbox"
)

func TestOutbox(t *testing.T) {
	outboxtest.Run(t, outboxtest.Harness{New: func(t *testing.T) outboxtest.Env {
		url := testenv.PostgresSchema(t)
		log, err := pgusers.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(log.Close)
		return outboxtest.Env{Log: log, Open: func(t *testing.T) webhook.Outbox {
			o, err := pgoutbox.Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(o.Close)
			return o
		}}
	}})
}
