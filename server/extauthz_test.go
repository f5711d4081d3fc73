package server

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/session"
	"github.com/sessiond/sessiond/store/memstore"
)

// grpcClient serves s.GRPC on a loopback listener and returns a client
// connection to it, both closed when the test ends.
func grpcClient(t *testing.T, s *Server) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := s.GRPC()
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// checkOf is the CheckRequest Envoy sends for a request from source to
// https://app.example/private?x=1 with headers (lower-case names) on a
// route whose context_extensions are ext.
func checkOf(source string, headers, ext map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: source, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Scheme: "https", Host: "app.example", Path: "/private?x=1", Protocol: "HTTP/2",
			Headers: headers,
		}},
		ContextExtensions: ext,
	}}
}

// headersOf are the header options of a check's answer as an http.Header,
// failing unless each replaces the request's header of its name.
func headersOf(t *testing.T, opts []*corev3.HeaderValueOption) http.Header {
	t.Helper()
	h := http.Header{}
	for _, o := range opts {
		if o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD || o.GetAppend().GetValue() {
			t.Errorf("header %s is not set with OVERWRITE_IF_EXISTS_OR_ADD: %v", o.GetHeader().GetKey(), o)
		}
		h[http.CanonicalHeaderKey(o.GetHeader().GetKey())] = []string{o.GetHeader().GetValue()}
	}
	return h
}

// TestExtAuthzAnswersAsResolve: for the same request and policy, a gRPC
// check gets what /resolve answers: the status, every header (on a 200
// the identity headers, set to replace the client's; on a refusal
// Location, Content-Type, Retry-After...), and the body, byte for byte.
func TestExtAuthzAnswersAsResolve(t *testing.T) {
	ps := newPolicyServer(t, app.SecondFactorPolicy{})
	client := authv3.NewAuthorizationClient(grpcClient(t, ps.Server))
	password := ps.session(t, "pat", []string{"member"}, session.AMRPassword)
	twoStep := ps.session(t, "tia", []string{"member", "admin"}, session.AMRPassword, session.AMROTP)
	rd := "?rd=" + url.QueryEscape("https://app.example/private?x=1")

	type cred struct{ cookie, bearer string }
	for _, tt := range []struct {
		name     string
		cred     cred
		browser  bool
		policy   string // /resolve's query; the same as context_extensions
		status   int
		location string
	}{
		{"cookie", cred{cookie: password}, false, "", 200, ""},
		{"bearer", cred{bearer: twoStep}, false, "", 200, ""},
		{"cookie, browser, aal=2 met", cred{cookie: twoStep}, true, "aal=2", 200, ""},
		{"no session, API client", cred{}, false, "", 401, ""},
		{"no session, browser", cred{}, true, "", 401, "/login" + rd},
		{"invalid token, browser", cred{cookie: strings.Repeat("A", session.TokenLen)}, true, "", 401, "/login" + rd + "&why=ended"},
		{"aal=2, AAL1, browser", cred{cookie: password}, true, "aal=2", 401, "/login/second-factor" + rd},
		{"aal=2, AAL1, browser, redirect", cred{cookie: password}, true, "aal=2&redirect=1", 302, "/login/second-factor" + rd},
		{"role lacking", cred{bearer: password}, false, "role=admin,ops", 403, ""},
		{"role lacking, browser, redirect", cred{cookie: password}, true, "redirect=1&role=admin", 403, ""},
		{"role held", cred{bearer: twoStep}, false, "role=admin,ops", 200, ""},
		{"max_age met", cred{cookie: password}, false, "max_age=60", 200, ""},
		{"app_cookie", cred{cookie: password}, false, "app_cookie=1", 200, ""},
		{"unknown policy key fails closed", cred{cookie: twoStep}, false, "maxage=60", 400, ""},
		{"bad policy value fails closed", cred{cookie: twoStep}, true, "aal=3", 400, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			headers := map[string]string{"user-agent": "test", "cookie": "theme=dark"}
			if tt.cred.cookie != "" {
				headers["cookie"] = "theme=dark; __Host-sid=" + tt.cred.cookie
			}
			if tt.cred.bearer != "" {
				headers["authorization"] = "Bearer " + tt.cred.bearer
			}
			if tt.browser {
				headers["accept"] = "text/html"
				headers["sec-fetch-mode"] = "navigate"
			}
			q, _ := url.ParseQuery(tt.policy)
			ext := map[string]string{}
			for k, v := range q {
				ext[k] = v[0]
			}

			// What /resolve answers nginx for the same request.
			r := httptest.NewRequest(http.MethodGet, "/resolve?"+tt.policy, nil)
			r.RemoteAddr = "127.0.0.1:40000"
			r.Host = "app.example"
			r.Header.Set("X-Original-URL", "https://app.example/private?x=1")
			for k, v := range headers {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			ps.Internal().ServeHTTP(w, r)
			if w.Code != tt.status || w.Header().Get("Location") != tt.location {
				t.Fatalf("/resolve: status %d Location %q, want %d %q", w.Code, w.Header().Get("Location"), tt.status, tt.location)
			}

			res, err := client.Check(t.Context(), checkOf("203.0.113.7", headers, ext))
			if err != nil {
				t.Fatal(err)
			}
			if tt.status == 200 {
				ok := res.GetOkResponse()
				if ok == nil || res.GetStatus().GetCode() != int32(codes.OK) {
					t.Fatalf("check: %v, want an OK response", res)
				}
				got := headersOf(t, ok.GetHeaders())
				want := w.Header().Clone()
				delete(want, "Cache-Control") // the proxy's, not the app's
				for k := range want {
					if g, w := got.Get(k), strings.Join(want[k], ","); g != w || got[k] == nil {
						t.Errorf("%s: check %q, /resolve %q", k, g, w)
					}
				}
				for k := range got {
					if want[k] == nil {
						t.Errorf("%s: %q in the check's answer, not in /resolve's", k, got.Get(k))
					}
				}
				if got.Get("Remote-User") == "" || got.Get("X-Session-Id") == "" {
					t.Errorf("no identity: %v", got)
				}
				return
			}
			denied := res.GetDeniedResponse()
			if denied == nil || res.GetStatus().GetCode() == int32(codes.OK) {
				t.Fatalf("check: %v, want a denial", res)
			}
			if got := int(denied.GetStatus().GetCode()); got != w.Code {
				t.Errorf("status %d, /resolve %d", got, w.Code)
			}
			got := headersOf(t, denied.GetHeaders())
			want := w.Header()
			if len(got) != len(want) {
				t.Errorf("headers %v, /resolve %v", got, want)
			}
			for k := range want {
				if g, w := got.Get(k), strings.Join(want[k], ","); g != w {
					t.Errorf("%s: check %q, /resolve %q", k, g, w)
				}
			}
			if denied.GetBody() != w.Body.String() {
				t.Errorf("body %q, /resolve %q", denied.GetBody(), w.Body)
			}
			if got.Get("Remote-User") != "" {
				t.Errorf("a denial carries Remote-User %q", got.Get("Remote-User"))
			}
		})
	}

	t.Run("max_age: stale after the time passes, and reauth is the way", func(t *testing.T) {
		ps.now = ps.now.Add(2 * time.Minute)
		t.Cleanup(func() { ps.now = ps.now.Add(-2 * time.Minute) })
		res, err := client.Check(t.Context(), checkOf("203.0.113.7", map[string]string{"cookie": "__Host-sid=" + password, "accept": "text/html"}, map[string]string{"max_age": "60"}))
		if err != nil {
			t.Fatal(err)
		}
		if d := res.GetDeniedResponse(); d == nil || d.GetStatus().GetCode() != 401 || headersOf(t, d.GetHeaders()).Get("Location") != "/login/reauth"+rd {
			t.Fatalf("check: %v, want 401 to /login/reauth", res)
		}
	})

	t.Run("metrics and health", func(t *testing.T) {
		var n float64
		for _, m := range ps.family(t, "sessiond_http_requests_total") {
			var route, code string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "route":
					route = l.GetValue()
				case "code":
					code = l.GetValue()
				}
			}
			if route == routeExtAuthz && code == "2xx" {
				n = m.GetCounter().GetValue()
			}
		}
		if n != 6 {
			t.Errorf(`sessiond_http_requests_total{route=%q,code="2xx"} = %v, want 6`, routeExtAuthz, n)
		}
		res, err := healthpb.NewHealthClient(grpcClient(t, ps.Server)).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health: %v, %v", res, err)
		}
	})
}

// family is testServer.family for a policyServer.
func (ps *policyServer) family(t *testing.T, name string) []*dto.Metric {
	t.Helper()
	families, err := ps.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}

// applyOK is what Envoy makes of the request's headers (lower-case names)
// with an OK answer: the answer's headers set, then headers_to_remove
// removed.
func applyOK(request map[string]string, ok *authv3.OkHttpResponse) map[string]string {
	out := map[string]string{}
	for k, v := range request {
		out[k] = v
	}
	for _, o := range ok.GetHeaders() {
		out[strings.ToLower(o.GetHeader().GetKey())] = o.GetHeader().GetValue()
	}
	for _, k := range ok.GetHeadersToRemove() {
		delete(out, strings.ToLower(k))
	}
	return out
}

// TestExtAuthzClientNeverSetsItsIdentity: whatever identity headers a
// client sends, in any spelling, the app gets sessiond's or none, also
// for a user without roles (an empty Remote-Groups) and for the headers
// sessiond does not send but apps read; the headers Envoy sets for the
// app stay.
func TestExtAuthzClientNeverSetsItsIdentity(t *testing.T) {
	ps := newPolicyServer(t, app.SecondFactorPolicy{})
	client := authv3.NewAuthorizationClient(grpcClient(t, ps.Server))
	tok := ps.session(t, "bob", nil, session.AMRPassword)
	spoof := map[string]string{
		"remote-user": "mallory", "remote_user": "mallory", "remote-groups": "admin", "remote_groups": "admin",
		"remote-email": "m@example.net", "remote-name": "Mallory", "x-forwarded-user": "mallory",
		"x-user-id": "u-mallory", "x_user_id": "u-mallory", "x-session-assertion": "forged", "x-session-aal": "2",
		"x-remote-user": "mallory", "x-auth-request-user": "mallory", "x-original-url": "https://mallory.example/",
	}
	keep := map[string]string{"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https", "accept": "*/*", "x-request-id": "r1"}
	headers := map[string]string{"cookie": "__Host-sid=" + tok}
	for k, v := range spoof {
		headers[k] = v
	}
	for k, v := range keep {
		headers[k] = v
	}
	res, err := client.Check(t.Context(), checkOf("203.0.113.7", headers, nil))
	if err != nil {
		t.Fatal(err)
	}
	if res.GetOkResponse() == nil {
		t.Fatalf("check: %v, want OK", res)
	}
	app := applyOK(headers, res.GetOkResponse())
	for k, v := range app {
		if strings.Contains(v, "mallory") || strings.Contains(v, "Mallory") || v == "admin" || v == "forged" || v == "u-mallory" || v == "m@example.net" {
			t.Errorf("the app gets the client's %s: %q", k, v)
		}
	}
	if app["remote-user"] != "bob" || app["remote-groups"] != "" || app["x-session-aal"] != "1" {
		t.Errorf("the app gets Remote-User %q, Remote-Groups %q, X-Session-AAL %q; want bob, empty, 1", app["remote-user"], app["remote-groups"], app["x-session-aal"])
	}
	if _, ok := app["remote-groups"]; !ok {
		t.Error("Remote-Groups is not set for a user without roles")
	}
	for k, v := range keep {
		if app[k] != v {
			t.Errorf("%s: the app gets %q, want the request's %q", k, app[k], v)
		}
	}
	for _, k := range res.GetOkResponse().GetHeadersToRemove() {
		if k != strings.ToLower(k) {
			t.Errorf("headers_to_remove %q is not lower case", k)
		}
	}

	// Envoy's encode_raw_headers: header_map instead of headers, repeated
	// names unmerged.
	raw := checkOf("203.0.113.7", nil, nil)
	raw.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "cookie", RawValue: []byte("__Host-sid=" + tok)},
		{Key: "remote-user", RawValue: []byte("mallory")},
		{Key: "remote-user", RawValue: []byte("eve")},
		{Key: "remote_user", RawValue: []byte("mallory")},
		{Key: "remote-email", RawValue: []byte("m@example.net")},
	}}
	res, err = client.Check(t.Context(), raw)
	if err != nil {
		t.Fatal(err)
	}
	if ok := res.GetOkResponse(); ok == nil || headersOf(t, ok.GetHeaders()).Get("Remote-User") != "bob" || !slices.Equal(ok.GetHeadersToRemove(), []string{"remote-email", "remote_user"}) {
		t.Errorf("header_map: %v, want OK as bob, removing remote-email and remote_user", res)
	}

	// app_cookie=1 with no cookie but sessiond's: the app gets no Cookie.
	res, err = client.Check(t.Context(), checkOf("203.0.113.7", map[string]string{"cookie": "__Host-sid=" + tok}, map[string]string{"app_cookie": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := applyOK(map[string]string{"cookie": "__Host-sid=" + tok}, res.GetOkResponse())["cookie"]; ok {
		t.Errorf("app_cookie=1: the app gets Cookie %q", c)
	}
	res, err = client.Check(t.Context(), checkOf("203.0.113.7", map[string]string{"cookie": "a=1; __Host-sid=" + tok + "; b=2"}, map[string]string{"app_cookie": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	if c := applyOK(map[string]string{"cookie": "x"}, res.GetOkResponse())["cookie"]; c != "a=1; b=2" {
		t.Errorf("app_cookie=1: the app gets Cookie %q, want %q", c, "a=1; b=2")
	}
}

// TestExtAuthzStoreDownIsNeverOK: with the session store gone, a check
// with a session that was valid is a 503 denial, logged and counted as a
// store failure.
func TestExtAuthzStoreDownIsNeverOK(t *testing.T) {
	st := openSQLiteStore(t)
	ts := newTestServer(t, st)
	client := authv3.NewAuthorizationClient(grpcClient(t, ts.Server))
	r := ts.resolveRequests(t, 1)[0]
	check := checkOf("203.0.113.7", map[string]string{"cookie": r.Header.Get("Cookie")}, nil)
	if res, err := client.Check(t.Context(), check); err != nil || res.GetOkResponse() == nil {
		t.Fatalf("with the store up: %v, %v; want OK", res, err)
	}
	st.Close()
	res, err := client.Check(t.Context(), check)
	if err != nil {
		t.Fatal(err)
	}
	d := res.GetDeniedResponse()
	if d == nil || res.GetStatus().GetCode() != int32(codes.Unavailable) || d.GetStatus().GetCode() != 503 || !strings.Contains(d.GetBody(), `"code":"store_unavailable"`) {
		t.Fatalf("store down: %v, want a 503 denial with gRPC status UNAVAILABLE", res)
	}
	if ts.metric(t, "sessiond_store_errors_total", "") != 1 || ts.metric(t, "sessiond_resolve_total", "store_unavailable") != 1 {
		t.Errorf("store errors %v, resolves{store_unavailable} %v; want 1 and 1", ts.metric(t, "sessiond_store_errors_total", ""), ts.metric(t, "sessiond_resolve_total", "store_unavailable"))
	}
}

// TestExtAuthzRateLimitsInvalidCredentials: invalid tokens count against
// the client Envoy saw (the check's source address, believed from a
// loopback gRPC peer), as on /resolve, and end in 429 with Retry-After;
// another client is not limited.
func TestExtAuthzRateLimitsInvalidCredentials(t *testing.T) {
	ts := newTestServerWith(t, memstore.New(), Config{InvalidTokenBurst: 3, InvalidTokenInterval: time.Hour})
	client := authv3.NewAuthorizationClient(grpcClient(t, ts.Server))
	bad := map[string]string{"cookie": "__Host-sid=" + strings.Repeat("A", session.TokenLen)}
	code := func(source string) int32 {
		res, err := client.Check(t.Context(), checkOf(source, bad, nil))
		if err != nil {
			t.Fatal(err)
		}
		return int32(res.GetDeniedResponse().GetStatus().GetCode())
	}
	for i := range 3 {
		if c := code("203.0.113.7"); c != 401 {
			t.Fatalf("invalid token %d: %d, want 401", i+1, c)
		}
	}
	res, err := client.Check(t.Context(), checkOf("203.0.113.7", bad, nil))
	if err != nil {
		t.Fatal(err)
	}
	d := res.GetDeniedResponse()
	if d.GetStatus().GetCode() != 429 || headersOf(t, d.GetHeaders()).Get("Retry-After") == "" || res.GetStatus().GetCode() != int32(codes.ResourceExhausted) {
		t.Fatalf("invalid token 4: %v, want 429 with Retry-After", res)
	}
	if c := code("198.51.100.9"); c != 401 {
		t.Errorf("another client: %d, want 401", c)
	}
}

// TestExtAuthzBelievesForwardingOnlyFromTrustedPeers: from a peer that
// is neither loopback nor a trusted proxy, the client is the peer itself
// (the source address and X-Forwarded-For are ignored), and the client's
// X-Original-URL never becomes the login redirect's rd.
func TestExtAuthzBelievesForwardingOnlyFromTrustedPeers(t *testing.T) {
	ts := newTestServerWith(t, memstore.New(), Config{TrustedProxies: mustPrefixes(t, "10.0.0.0/8")})
	check := checkOf("203.0.113.7", map[string]string{"x-forwarded-for": "198.51.100.1", "x-original-url": "https://evil.example/"}, nil)
	for _, tt := range []struct {
		peer, client, original string
	}{
		{"192.0.2.10:5000", "192.0.2.10", ""},
		{"10.1.2.3:5000", "203.0.113.7", "https://app.example/private?x=1"},
		{"127.0.0.1:5000", "203.0.113.7", "https://app.example/private?x=1"},
	} {
		addr, _ := net.ResolveTCPAddr("tcp", tt.peer)
		ctx := peer.NewContext(t.Context(), &peer.Peer{Addr: addr})
		r, e := ts.checkRequest(ctx, check)
		if e != nil {
			t.Fatal(e)
		}
		if got := ts.clientIP(r); got != tt.client {
			t.Errorf("peer %s: client %s, want %s", tt.peer, got, tt.client)
		}
		if got := ts.originalURL(r); got != tt.original {
			t.Errorf("peer %s: original URL %q, want %q", tt.peer, got, tt.original)
		}
	}
	// A request target that is not a path ("*", or none): no original URL,
	// and still not the client's.
	for _, path := range []string{"*", ""} {
		check.Attributes.Request.Http.Path = path
		r, e := ts.checkRequest(peer.NewContext(t.Context(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}}), check)
		if e != nil {
			t.Fatal(e)
		}
		if got := ts.originalURL(r); got != "" {
			t.Errorf("path %q: original URL %q, want none", path, got)
		}
	}
}

// TestExtAuthzRefusesMalformedChecks: a check that describes no HTTP
// request, or one over the bounds, is a clear denial in sessiond's JSON
// error shape; a message over the size limit is refused by gRPC.
func TestExtAuthzRefusesMalformedChecks(t *testing.T) {
	ts := newTestServer(t, memstore.New())
	client := authv3.NewAuthorizationClient(grpcClient(t, ts.Server))
	many := map[string]string{}
	for i := range maxCheckHeaders + 1 {
		many["x-h"+strings.Repeat("a", i%7)+string(rune('a'+i%26))+strings.Repeat("b", i/26)] = "v"
	}
	for _, tt := range []struct {
		name   string
		req    *authv3.CheckRequest
		status int32
		code   string
	}{
		{"empty", &authv3.CheckRequest{}, 400, "bad_request"},
		{"no HTTP attributes", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}, 400, "bad_request"},
		{"too many headers", checkOf("203.0.113.7", many, nil), 413, "too_large"},
		{"headers too large", checkOf("203.0.113.7", map[string]string{"x-big": strings.Repeat("b", maxCheckHeaderBytes)}, nil), 413, "too_large"},
	} {
		res, err := client.Check(t.Context(), tt.req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		d := res.GetDeniedResponse()
		if int32(d.GetStatus().GetCode()) != tt.status || res.GetStatus().GetCode() == int32(codes.OK) || !strings.Contains(d.GetBody(), `"code":"`+tt.code+`"`) {
			t.Errorf("%s: %v, want %d %s", tt.name, res, tt.status, tt.code)
		}
	}
	_, err := client.Check(t.Context(), checkOf("203.0.113.7", map[string]string{"x-big": strings.Repeat("b", maxCheckMessage)}, nil))
	if grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Errorf("a message over %d bytes: %v, want RESOURCE_EXHAUSTED", maxCheckMessage, err)
	}
}

// FuzzCheckRequest: whatever a check holds, it is answered without a
// panic, a 200 only with a session (there is none), and every refusal in
// sessiond's JSON error shape or a redirect.
func FuzzCheckRequest(f *testing.F) {
	f.Add("GET", "https", "app.example", "/x?y=1", "cookie", "__Host-sid=abc", "aal", "2", "203.0.113.7")
	f.Add("", "", "", "", "", "", "", "", "")
	f.Add("POST", "http", "[::1]:8080", "*", "remote_user", "mallory", "redirect", "1", "::ffff:127.0.0.1")
	f.Add("G\x00T", "x", "a b", "//evil.example/%zz", ":path", "/", "role", ",", "not an address")
	ts := newTestServer(f, memstore.New())
	f.Fuzz(func(t *testing.T, method, scheme, host, path, hk, hv, ek, ev, source string) {
		req := checkOf(source, map[string]string{hk: hv, "accept": "text/html"}, map[string]string{ek: ev})
		h := req.Attributes.Request.Http
		h.Method, h.Scheme, h.Host, h.Path = method, scheme, host, path
		ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}})
		res := ts.check(ctx, req)
		if res.GetOkResponse() != nil || res.GetStatus().GetCode() == int32(codes.OK) {
			t.Fatalf("OK without a session: %v", res)
		}
		d := res.GetDeniedResponse()
		if d.GetStatus().GetCode() != 302 && !strings.HasPrefix(d.GetBody(), `{"error":{"code":`) {
			t.Fatalf("denial %d with body %q", d.GetStatus().GetCode(), d.GetBody())
		}
		if slices.ContainsFunc(d.GetHeaders(), func(o *corev3.HeaderValueOption) bool { return o.GetHeader().GetKey() == "remote-user" }) {
			t.Fatal("a denial carries remote-user")
		}
	})
}
