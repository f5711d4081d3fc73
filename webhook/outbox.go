package webhook

import (
	"context"
	"time"

	"github.com/sessiond/sessiond/audit"
)

// Outbox keeps the deliveries still to make: one per event and hook,
// written by the database in the transaction that appends the event to
// the audit log. webhook/sqliteoutbox and webhook/pgoutbox implement it
// beside users/sqliteusers and users/pgusers, and pass webhook/outboxtest.
//
// Claims are exclusive: a delivery claimed by one owner is claimed by no
// other until its lease ends, however many instances share the outbox.
type Outbox interface {
	// SetHooks makes ids the hooks that get a delivery for each event
	// appended from now on; the others get none. Deliveries already
	// queued for a hook stay.
	SetHooks(ctx context.Context, ids []string) error
	// Claim leases up to limit due deliveries of the hooks ids to owner
	// until now+lease, counts an attempt of each, and returns them with
	// their events. A delivery is due when it is not dead, its next
	// attempt is at or before now, and no lease on it runs past now.
	Claim(ctx context.Context, owner string, ids []string, now time.Time, lease time.Duration, limit int) ([]Delivery, error)
	// Delivered removes d, if owner still holds it, and clears its hook's
	// failure.
	Delivered(ctx context.Context, owner string, d Delivery) error
	// Failed releases d, if owner still holds it, until next, or makes it
	// a dead letter if dead; it records msg as the last error of d and of
	// its hook, whose failure began at now if it was not failing.
	Failed(ctx context.Context, owner string, d Delivery, now, next time.Time, dead bool, msg string) error
	// Stats returns the state of each hook that has deliveries queued or
	// a failure recorded.
	Stats(ctx context.Context) (map[string]Stats, error)
	// Retry makes hook id's dead letters due at now, with no attempt
	// counted, and returns how many.
	Retry(ctx context.Context, id string, now time.Time) (int, error)
}

// Delivery is one event to send to one hook.
type Delivery struct {
	HookID string
	// Event is the audit event; Missing if it is no longer in the log
	// (deleted by the retention sweep before it was delivered).
	Event   audit.Event
	Missing bool
	// Attempts counts the attempts made, this one included.
	Attempts int
	// Since is when the current run of attempts began: the event's time,
	// or the time the dead letter was retried.
	Since time.Time
}

// Stats is the state of one hook's queue.
type Stats struct {
	// Pending counts deliveries not yet made (due or waiting to retry).
	Pending int
	// Dead counts dead letters: deliveries given up on.
	Dead int
	// FailingSince is when the hook's current run of failed attempts
	// began; zero when its last attempt succeeded.
	FailingSince time.Time
	// LastError describes the hook's last failed attempt.
	LastError string
}
