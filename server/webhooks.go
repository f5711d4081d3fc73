package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessiond/sessiond/webhook"
)

// metricSource is implemented by a Deps.Webhooks with metrics of its own
// (webhook.Dispatcher), which New registers beside the server's.
type metricSource interface {
	Collectors() []prometheus.Collector
}

// adminWebhooks is GET /api/v1/admin/webhooks: each configured webhook's
// redacted URL, backlog, failure and dead letters.
func (s *Server) adminWebhooks(w http.ResponseWriter, r *http.Request) {
	hooks, err := s.app.WebhookStatus(r.Context(), s.actor(r))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"webhooks": hooks})
}

// adminRetryWebhook is POST /api/v1/admin/webhooks/{hook}/retry: the
// hook's dead letters are delivered again. Answers {"retried":N}.
func (s *Server) adminRetryWebhook(w http.ResponseWriter, r *http.Request) {
	n, err := s.app.RetryWebhook(r.Context(), s.actor(r), r.PathValue("hook"))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"retried": n})
}

// webhooksData is the webhooks page's data.
type webhooksData struct {
	Hooks []webhook.HookStatus
}

// adminWebhooksPage is GET /admin/webhooks: the webhooks' state, with a
// form per hook to retry its dead letters.
func (s *Server) adminWebhooksPage(w http.ResponseWriter, r *http.Request) {
	v, err := s.signedIn(r, "Webhooks", "webhooks")
	if err == nil {
		var hooks []webhook.HookStatus
		hooks, err = s.app.WebhookStatus(r.Context(), s.actor(r))
		v.Data = webhooksData{Hooks: hooks}
	}
	if err != nil {
		s.pageErr(w, r, err)
		return
	}
	s.render(w, http.StatusOK, "admin_webhooks.html", v)
}

// adminRetryWebhookForm is POST /admin/webhooks/{hook}/retry.
func (s *Server) adminRetryWebhookForm(w http.ResponseWriter, r *http.Request) {
	n, err := s.app.RetryWebhook(r.Context(), s.actor(r), r.PathValue("hook"))
	if err != nil {
		s.pageErr(w, r, err)
		return
	}
	done(w, r, "/admin/webhooks", "webhooks-retried", n)
}
