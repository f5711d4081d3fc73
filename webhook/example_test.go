package webhook_test

import (
	"fmt"

	"github.com/sessiond/sessiond/webhook"
)

// The webhook-signature of a message, as a receiver recomputes it to
// verify one.
func ExampleSign() {
	key, err := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		panic(err)
	}
	body := []byte(`{"type":"session.revoked","timestamp":"2026-12-02T08:00:00Z","data":{"id":42}}`)
	fmt.Println(webhook.Sign(key, webhook.MessageID(42), 1764662400, body))
	// Output: v1,lG3wTuiNxn1ikeJ3LoDPkZZuUWl/73hZ0g/fGy/H4Hk=
}
