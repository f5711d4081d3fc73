package server

import "net/http"

// renderForbidden is the page a browser sees when a proxy shows it
// resolve's refusal of a user who lacks the route's role: it says so and
// leads nowhere that would send the browser back (no redirect loop).
func (s *Server) renderForbidden(w http.ResponseWriter, _ *http.Request) {
	s.render(w, http.StatusForbidden, "forbidden.html", view{Title: "No access to this page"})
}
