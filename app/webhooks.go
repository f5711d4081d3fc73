package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/webhook"
)

// Webhooks is the webhook delivery an App reports on and acts through: a
// *webhook.Dispatcher.
type Webhooks interface {
	// Status returns the state of each configured hook.
	Status(ctx context.Context) ([]webhook.HookStatus, error)
	// Retry makes a hook's dead letters due again and returns how many.
	Retry(ctx context.Context, id string) (int, error)
	// Notify says events may be waiting in the outbox; it never blocks.
	Notify()
}

// WebhookStatus returns the state of each configured webhook (none
// without Deps.Webhooks), for admins.
func (a *App) WebhookStatus(ctx context.Context, actor Actor) ([]webhook.HookStatus, error) {
	if !actor.Admin {
		return nil, ErrForbidden
	}
	if a.webhooks == nil {
		return []webhook.HookStatus{}, nil
	}
	return a.webhooks.Status(ctx)
}

// maxHookID bounds the hook ID a client sends (IDs are 16 hex digits).
const maxHookID = 64

// RetryWebhook makes the dead letters of hook id due again, for admins,
// and audits it (audit.WebhookRetried, the reason naming the hook and
// the count). It returns how many it made due.
func (a *App) RetryWebhook(ctx context.Context, actor Actor, id string) (int, error) {
	if !actor.Admin {
		return 0, ErrForbidden
	}
	if a.webhooks == nil || len(id) > maxHookID {
		return 0, Errorf(CodeNotFound, "No such webhook.")
	}
	n, err := a.webhooks.Retry(ctx, id)
	if errors.Is(err, webhook.ErrUnknownHook) {
		return 0, Errorf(CodeNotFound, "No such webhook.")
	}
	if err != nil {
		return 0, err
	}
	a.recordBy(ctx, actor, audit.WebhookRetried, nil, fmt.Sprintf("hook=%s retried=%d", id, n))
	return n, nil
}
