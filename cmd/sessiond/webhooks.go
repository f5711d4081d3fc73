package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/webhook"
	"github.com/sessiond/sessiond/webhook/pgoutbox"
	"github.com/sessiond/sessiond/webhook/sqliteoutbox"
)

// stringList is a repeatable flag: each use adds a value. Its String
// shows no value, so that no secret a value holds reaches a message.
type stringList []string

func (l *stringList) String() string {
	if l == nil || len(*l) == 0 {
		return ""
	}
	return fmt.Sprintf("(%d values)", len(*l))
}

func (l *stringList) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// webhookHooks parses --webhook and --webhook-secret: each --webhook is
// "URL" (signed with --webhook-secret) or "URL whsec_…" (a secret of its
// own, for the config file). Its errors name URLs without their
// user-info, and never a secret.
func (o *options) webhookHooks() ([]webhook.Hook, error) {
	var hooks []webhook.Hook
	var errs []error
	for _, v := range o.webhooks {
		f := strings.Fields(v)
		var url, secret string
		switch len(f) {
		case 1:
			url, secret = f[0], o.webhookSecret
			if secret == "" {
				h, _ := webhook.NewHook(url, webhook.NewSecret())
				errs = append(errs, fmt.Errorf("--webhook %s has no secret: set --webhook-secret (or SESSIOND_WEBHOOK_SECRET), or give it one of its own in the config file (webhook = URL whsec_...); make one with `sessiond webhook-secret`", redactHookURL(h, url)))
				continue
			}
		case 2:
			url, secret = f[0], f[1]
		default:
			errs = append(errs, errors.New(`--webhook: want "URL" or "URL whsec_..." (the URL and its own secret, separated by a space)`))
			continue
		}
		h, err := webhook.NewHook(url, secret)
		if err != nil {
			errs = append(errs, fmt.Errorf("--webhook: %w", err))
			continue
		}
		hooks = append(hooks, h)
	}
	if o.webhookMaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("--webhook-max-attempts %d: use 1 or more", o.webhookMaxAttempts))
	}
	if o.webhookMaxAge <= 0 {
		errs = append(errs, fmt.Errorf("--webhook-max-age %v: use a positive duration, such as 72h", o.webhookMaxAge))
	}
	if o.webhookTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--webhook-timeout %v: use a positive duration, such as 10s", o.webhookTimeout))
	}
	if len(o.webhooks) == 0 && o.webhookSecret != "" {
		errs = append(errs, errors.New("--webhook-secret is set but no --webhook URL is"))
	}
	return hooks, errors.Join(errs...)
}

// redactHookURL is the URL of h, redacted, or a placeholder if url did
// not parse.
func redactHookURL(h webhook.Hook, url string) string {
	if h.URL == nil {
		return "(an invalid URL)"
	}
	return webhook.Redact(h.URL)
}

// webhooks is the outbox and the dispatcher of serve.
type webhooks struct {
	outbox     webhook.Outbox
	dispatcher *webhook.Dispatcher
	close      func()
}

// openWebhooks opens the webhook outbox in the user directory's database
// (the audit log's), registers hooks with it (an instance with none turns
// every hook off: the database stops queuing events for them), and builds
// the dispatcher. Close it after the dispatcher stops.
func openWebhooks(ctx context.Context, o *options, hooks []webhook.Hook, log *slog.Logger) (*webhooks, error) {
	u := o.usersURL()
	if u == "" {
		u = app.DatabaseURL(o.store)
	}
	st, err := app.ParseStoreURL(u)
	if err != nil {
		return nil, err
	}
	w := &webhooks{}
	switch st.Kind {
	case "sqlite":
		ob, err := sqliteoutbox.Open(st.Path)
		if err != nil {
			return nil, err
		}
		w.outbox, w.close = ob, func() { ob.Close() }
	case "postgres":
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		ob, err := pgoutbox.Open(octx, st.Path)
		if err != nil {
			return nil, errors.New(strings.ReplaceAll(err.Error(), st.Path, app.RedactURL(st.Path)))
		}
		w.outbox, w.close = ob, ob.Close
	default:
		return nil, fmt.Errorf("webhooks need the user directory in sqlite:PATH or postgres://..., not %s", app.RedactURL(u))
	}
	ids := make([]string, len(hooks))
	for i, h := range hooks {
		ids[i] = h.ID
	}
	if err := w.outbox.SetHooks(ctx, ids); err != nil {
		w.close()
		return nil, err
	}
	if w.dispatcher, err = webhook.New(webhook.Config{Hooks: hooks, Outbox: w.outbox, Logger: log,
		MaxAttempts: o.webhookMaxAttempts, MaxAge: o.webhookMaxAge, Client: webhookClient(o.webhookTimeout), Lease: 3 * o.webhookTimeout}); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// webhookClient is the HTTP client of deliveries: timeout bounds each,
// and no redirect is followed (a 3xx is a failed attempt).
func webhookClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
