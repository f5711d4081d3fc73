// Package webhook sends sessiond's audit events (every session and
// account event) to HTTP endpoints, signed as Standard Webhooks specify
// (https://www.standardwebhooks.com), from a durable outbox.
//
// Usage: open an Outbox beside the audit log (webhook/sqliteoutbox or
// webhook/pgoutbox, on the database of users/sqliteusers or
// users/pgusers), build the hooks with NewHook (a URL and a whsec_ secret),
// and run a Dispatcher:
//
//	d, err := webhook.New(webhook.Config{Hooks: hooks, Outbox: outbox})
//	go d.Run(ctx)
//
// Guarantees:
//   - Durable: the database itself queues one delivery per enabled hook
//     in the transaction that appends each event to the audit log (a
//     trigger), so an event acknowledged by the log is delivered, or
//     becomes a dead letter, whatever crashes after; and an event never
//     stored is never sent.
//   - At least once: a delivery is removed only after a 2xx answer. A
//     crash between the answer and the removal sends it again; receivers
//     drop duplicates by the webhook-id header, which is the same for
//     every attempt (MessageID).
//   - One attempt at a time: a delivery is leased to one instance
//     (Outbox.Claim) until it reports the outcome or the lease ends,
//     however many instances share the database.
//   - Retries back off exponentially (Config.MinBackoff to MaxBackoff,
//     with jitter) until Config.MaxAttempts or Config.MaxAge, then the
//     delivery is a dead letter, kept until Dispatcher.Retry.
//   - Not in order: deliveries to one hook may arrive in any order (a
//     retried one after later events); order by the payload's timestamp
//     or the event's id.
//
// Each message is a POST with a JSON body (Payload: type, timestamp, and
// the audit event as data) and the headers webhook-id, webhook-timestamp
// (unix seconds) and webhook-signature ("v1," and the base64 HMAC-SHA256
// of "{id}.{timestamp}.{body}" under the secret's decoded bytes). Audit
// events never hold a token, password or code, so no message does; they
// do hold user IDs, usernames, IP addresses and user agents.
//
// The client follows no redirect (a 3xx is a failed attempt), bounds each
// attempt with its timeout, and reads at most 64 KiB of an answer. A
// hook's URL may hold credentials: logs and the admin view show it with
// the user-info replaced (Redact); errors never quote a secret.
package webhook
