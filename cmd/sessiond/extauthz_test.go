package main

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"
)

var grpcListening = regexp.MustCompile(`ext_authz gRPC listening.* addr=(127\.0\.0\.1:\d+)`)

// grpcConn is a client connection to in's --grpc-listen, closed when the
// test ends.
func grpcConn(t *testing.T, in *instance) *grpc.ClientConn {
	t.Helper()
	m := grpcListening.FindStringSubmatch(in.logs.String())
	if m == nil {
		t.Fatalf("no gRPC listener in the log:\n%s", in.logs)
	}
	conn, err := grpc.NewClient(m[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestExtAuthzOverGRPC runs sessiond with --grpc-listen 127.0.0.1:0 and
// checks requests with a gRPC client built from Envoy's protos: a
// session's cookie or bearer token gets the identity headers /resolve
// gives the same session, header by header; no session is a 401 denial,
// with Location for a browser and the JSON error for an API client; the
// health service answers; and the server stops cleanly.
func TestExtAuthzOverGRPC(t *testing.T) {
	in := start(t, "--grpc-listen", "127.0.0.1:0")
	conn := grpcConn(t, in)
	client := authv3.NewAuthorizationClient(conn)
	check := func(headers map[string]string) *authv3.CheckResponse {
		t.Helper()
		res, err := client.Check(t.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "203.0.113.7"},
			}}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Scheme: "https", Host: "app.example.com", Path: "/reports?q=1", Headers: headers,
			}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	cookie := in.login("admin", adminPassword)
	bearer, _ := in.token("admin", adminPassword)
	for _, tt := range []struct {
		name    string
		grpc    map[string]string
		request req
	}{
		{"cookie", map[string]string{"cookie": "__Host-sid=" + cookie}, req{cookie: cookie}},
		{"bearer", map[string]string{"authorization": "Bearer " + bearer}, req{bearer: bearer}},
	} {
		tt.request.method, tt.request.path = "GET", "/resolve"
		hr := in.do(tt.request)
		res := check(tt.grpc)
		ok := res.GetOkResponse()
		if hr.StatusCode != 200 || ok == nil {
			t.Fatalf("%s: /resolve %d, check %v", tt.name, hr.StatusCode, res)
		}
		got := map[string]string{}
		for _, o := range ok.GetHeaders() {
			got[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
		}
		for _, name := range []string{"Remote-User", "Remote-Groups", "X-User-Id", "X-Session-Id", "X-Session-Expires-At", "X-Session-Absolute-Expires-At", "X-Session-Authenticated-At", "X-Session-AAL", "X-Session-AMR"} {
			if g, w := got[strings.ToLower(name)], hr.Header.Get(name); g != w || w == "" && name != "X-Session-AMR" {
				t.Errorf("%s: %s: check %q, /resolve %q", tt.name, name, g, w)
			}
		}
		for k, v := range got {
			if hr.Header.Get(k) != v {
				t.Errorf("%s: the check sets %s: %q, /resolve sends %q", tt.name, k, v, hr.Header.Get(k))
			}
		}
	}

	for _, browser := range []bool{false, true} {
		headers := map[string]string{"remote-user": "mallory"}
		if browser {
			headers["accept"] = "text/html"
		}
		res := check(headers)
		d := res.GetDeniedResponse()
		if d == nil || d.GetStatus().GetCode() != 401 || res.GetStatus().GetCode() != int32(codes.Unauthenticated) {
			t.Fatalf("no session (browser %v): %v, want a 401 denial", browser, res)
		}
		var location string
		for _, o := range d.GetHeaders() {
			if o.GetHeader().GetKey() == "location" {
				location = o.GetHeader().GetValue()
			}
		}
		switch {
		case browser && location != "/login?rd=https%3A%2F%2Fapp.example.com%2Freports%3Fq%3D1":
			t.Errorf("browser: Location %q", location)
		case !browser && (location != "" || !strings.Contains(d.GetBody(), `"code":"unauthenticated"`)):
			t.Errorf("API client: Location %q, body %q", location, d.GetBody())
		}
	}

	hres, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || hres.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: %v, %v", hres, err)
	}
	r := in.do(req{method: "GET", path: "/metrics"})
	if r.StatusCode != http.StatusOK || !strings.Contains(string(r.body), `sessiond_http_requests_total{code="2xx",route="grpc /envoy.service.auth.v3.Authorization/Check"} 2`) {
		t.Errorf("metrics: no 2 OK checks:\n%s", grepLines(string(r.body), "grpc"))
	}
	if code := in.stop(); code != 0 || !strings.Contains(in.logs.String(), "sessiond stopped") {
		t.Errorf("stop: exit %d", code)
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestEnvoyGRPCConfigIsEnvoys reads docs/proxies/envoy-grpc.yaml as
// Envoy's bootstrap proto (go-control-plane's, with every typed config it
// names) and runs the protos' validation rules on it, so that a misspelt
// field, a value of the wrong type or one out of range fails here; it
// also checks what the file must say for sessiond: failure_mode_allow
// false, no request body, no allowed_headers, and a policy in the
// context_extensions of every route to the app that sessiond reads.
func TestEnvoyGRPCConfigIsEnvoys(t *testing.T) {
	in := start(t, "--grpc-listen", "127.0.0.1:0")
	client := authv3.NewAuthorizationClient(grpcConn(t, in))
	raw, err := os.ReadFile("../../docs/proxies/envoy-grpc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var boot bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &boot); err != nil {
		t.Fatalf("not an Envoy bootstrap: %v", err)
	}
	if err := boot.ValidateAll(); err != nil {
		t.Fatalf("invalid: %v", err)
	}
	hcmAny := boot.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig()
	var hcm hcmv3.HttpConnectionManager
	if err := hcmAny.UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	var authz extauthzv3.ExtAuthz
	if err := hcm.GetHttpFilters()[0].GetTypedConfig().UnmarshalTo(&authz); err != nil {
		t.Fatal(err)
	}
	if authz.GetFailureModeAllow() || authz.GetWithRequestBody() != nil || authz.GetAllowedHeaders() != nil || authz.GetGrpcService().GetEnvoyGrpc().GetClusterName() != "sessiond_authz" {
		t.Errorf("ext_authz: %v", &authz)
	}
	for _, r := range hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		var per extauthzv3.ExtAuthzPerRoute
		if err := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"].UnmarshalTo(&per); err != nil {
			t.Fatal(err)
		}
		if r.GetRoute().GetCluster() != "app" {
			if !per.GetDisabled() {
				t.Errorf("route %v to sessiond is checked", r.GetMatch())
			}
			continue
		}
		ext := per.GetCheckSettings().GetContextExtensions()
		if ext["redirect"] != "1" || ext["app_cookie"] != "1" || !slices.Contains(r.GetRequestHeadersToRemove(), "authorization") {
			t.Errorf("route %v: context_extensions %v, request_headers_to_remove %v", r.GetMatch(), ext, r.GetRequestHeadersToRemove())
		}
		// sessiond reads the policy: no session is a 401, not the 400 of
		// a policy it refuses.
		res, err := client.Check(t.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Scheme: "https", Host: "app.example.com", Path: "/",
			}},
			ContextExtensions: ext,
		}})
		if err != nil {
			t.Fatal(err)
		}
		if c := res.GetDeniedResponse().GetStatus().GetCode(); c != 401 {
			t.Errorf("route %v: policy %v: status %d, want 401: %s", r.GetMatch(), ext, c, res.GetDeniedResponse().GetBody())
		}
	}
}
