package server

import (
	"bytes"
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"

	"github.com/sessiond/sessiond/app"
)

// routeExtAuthz is the route label of Envoy's ext_authz checks over gRPC
// in the HTTP metrics and the access log.
const routeExtAuthz = "grpc /envoy.service.auth.v3.Authorization/Check"

// Bounds of what one ext_authz check may cost. Envoy keeps a request's
// headers within 60 KiB and 100 headers by default; the gRPC port takes
// any client that reaches it (it is on loopback by default), so sessiond
// bounds them itself.
const (
	// maxCheckMessage is the largest CheckRequest decoded: a request
	// whose headers fill Envoy's limit, with room for the rest of its
	// attributes.
	maxCheckMessage = 256 << 10
	// maxCheckHeaderBytes bounds the request's header names and values,
	// path and host, as --listen's HTTP server bounds its headers.
	maxCheckHeaderBytes = 64 << 10
	// maxCheckHeaders bounds how many headers a request has.
	maxCheckHeaders = 256
	// maxCheckStreams bounds the checks in flight on one connection.
	maxCheckStreams = 1024
)

// GRPC returns a gRPC server that answers Envoy's external authorization
// checks (envoy.service.auth.v3.Authorization, the ext_authz filter's
// grpc_service) and the standard health service (grpc.health.v1). A
// check is answered as /resolve answers the same request, by the same
// code: an OkHttpResponse with the identity headers, or a
// DeniedHttpResponse with /resolve's status, headers and JSON body. The
// route's policy comes from the check's context_extensions (see
// checkRequest). Serve it on a listener only the proxy reaches: it speaks
// plain gRPC, and the requests it checks carry session cookies and
// bearer tokens.
func (s *Server) GRPC() *grpc.Server {
	g := grpc.NewServer(
		grpc.MaxRecvMsgSize(maxCheckMessage),
		grpc.MaxConcurrentStreams(maxCheckStreams),
		grpc.MaxHeaderListSize(16<<10), // the gRPC call's own metadata, not the checked request's
		grpc.ConnectionTimeout(10*time.Second),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute}),
	)
	authv3.RegisterAuthorizationServer(g, extAuthz{s: s})
	hs := health.NewServer()
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	return g
}

// extAuthz is the Authorization service of Server.GRPC.
type extAuthz struct {
	authv3.UnimplementedAuthorizationServer
	s *Server
}

// Check answers one ext_authz check (see Server.GRPC). Its error is
// always nil: every refusal, a store failure included, is a
// DeniedHttpResponse, which Envoy answers the client with whatever its
// failure_mode_allow says.
func (a extAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return a.s.check(ctx, req), nil
}

// check answers req as /resolve answers the request it describes:
// checkRequest turns it into that request, answerResolve answers it into
// an answer, and checkResponse turns the answer into Envoy's terms. The
// check is logged and counted as the route routeExtAuthz.
func (s *Server) check(ctx context.Context, req *authv3.CheckRequest) *authv3.CheckResponse {
	start := time.Now()
	w := &answer{header: http.Header{}}
	r, e := s.checkRequest(ctx, req)
	var code int
	var id identity
	if e != nil {
		setBodyHeaders(w.header)
		writeError(w, e)
		code = w.status
	} else {
		code, id = s.answerResolve(w, r, start)
	}
	d := time.Since(start)
	s.metrics.observe(s.metrics.route(routeExtAuthz), code, d)
	var userID, sessionID string
	if id.session != nil {
		userID, sessionID = id.session.UserID, id.session.ID
	}
	s.logAccess(r, routeExtAuthz, code, d, userID, sessionID)
	return checkResponse(code, w, r, req)
}

// checkRequest is the request /resolve would get for the HTTP request a
// CheckRequest describes, or the error to refuse it with when it
// describes none or one over the bounds (maxCheckHeaders,
// maxCheckHeaderBytes). It always returns a request, for the access log.
//
//   - Its URL is /resolve with the check's context_extensions as the
//     query string: the route's policy, read by parsePolicy with the same
//     keys and the same strictness as /resolve's (an unknown key refuses
//     every request). Envoy sets context_extensions from its own
//     configuration only, never from the client.
//   - Its method, Host and headers are the described request's; the
//     client's X-Original-URL, X-Forwarded-Host and X-Forwarded-Uri are
//     dropped, and X-Original-URL is set from the check's scheme, host
//     and path (believed, as from any peer, only if the gRPC peer is
//     trusted).
//   - Its RemoteAddr is the gRPC peer's (Envoy's) address, and the
//     check's source address (the peer Envoy saw) is appended to
//     X-Forwarded-For, as Envoy's use_remote_address does for the request
//     itself: clientIP believes X-Forwarded-For only from a trusted peer
//     (loopback, or Config.TrustedProxies), and takes the peer for the
//     client otherwise.
func (s *Server) checkRequest(ctx context.Context, req *authv3.CheckRequest) (*http.Request, *app.Error) {
	r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/resolve", http.NoBody)
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		r.RemoteAddr = p.Addr.String()
	}
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	if h == nil {
		return r, app.Errorf(app.CodeBadRequest, "The check request describes no HTTP request.")
	}
	size := len(h.GetPath()) + len(h.GetHost())
	n := len(h.GetHeaders()) + len(h.GetHeaderMap().GetHeaders())
	if n > maxCheckHeaders {
		return r, app.Errorf(app.CodeTooLarge, "The request has more than %d headers.", maxCheckHeaders)
	}
	for k, v := range h.GetHeaders() {
		size += len(k) + len(v)
	}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		size += len(hv.GetKey()) + len(hv.GetValue()) + len(hv.GetRawValue())
	}
	if size > maxCheckHeaderBytes {
		return r, app.Errorf(app.CodeTooLarge, "The request's headers are over %d bytes.", maxCheckHeaderBytes)
	}
	header := make(http.Header, n+1)
	add := func(k, v string) {
		if k != "" && k[0] != ':' { // pseudo-headers: the method, path and host are fields of their own
			header.Add(k, v) // canonicalizes k
		}
	}
	for k, v := range h.GetHeaders() {
		add(k, v)
	}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		v := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		add(hv.GetKey(), v)
	}
	if m := h.GetMethod(); m != "" {
		r.Method = m
	}
	r.Host = h.GetHost()
	r.Header = header
	header.Del("X-Original-Url")
	header.Del("X-Forwarded-Host")
	header.Del("X-Forwarded-Uri")
	if p := h.GetPath(); strings.HasPrefix(p, "/") {
		scheme := "https"
		if h.GetScheme() == "http" {
			scheme = "http"
		}
		header["X-Original-Url"] = []string{(&url.URL{Scheme: scheme, Host: r.Host}).String() + p}
	}
	if a, err := netip.ParseAddr(attrs.GetSource().GetAddress().GetSocketAddress().GetAddress()); err == nil {
		xff := append(header.Values("X-Forwarded-For"), a.Unmap().String())
		header["X-Forwarded-For"] = []string{strings.Join(xff, ", ")}
	}
	if ext := attrs.GetContextExtensions(); len(ext) > 0 {
		q := make(url.Values, len(ext))
		for k, v := range ext {
			q[k] = []string{v}
		}
		r.URL.RawQuery = q.Encode()
	}
	return r, nil
}

// checkResponse is Envoy's form of the answer w that /resolve gave, with
// status code, to r (the request req describes).
//
// A 200 is an OkHttpResponse: its headers (but Cache-Control, which is
// for the proxy) replace the request's (OVERWRITE_IF_EXISTS_OR_ADD), and
// headers_to_remove names every header of the client's that could pass
// for sessiond's and that sessiond did not set (spoofed), and the Cookie
// header when the policy app_cookie=1 left no cookie for the app.
//
// Any other status is a DeniedHttpResponse with that status, and the
// answer's headers and body, which Envoy sends the client. Its gRPC
// status is the code that names the refusal (UNAUTHENTICATED,
// PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNAVAILABLE, INVALID_ARGUMENT):
// anything but OK, which is what Envoy reads as a denial.
func checkResponse(code int, w *answer, r *http.Request, req *authv3.CheckRequest) *authv3.CheckResponse {
	if code == http.StatusOK {
		ok := &authv3.OkHttpResponse{Headers: headerOptions(w.header, "Cache-Control")}
		ok.HeadersToRemove = spoofed(req.GetAttributes().GetRequest().GetHttp(), w.header)
		if req.GetAttributes().GetContextExtensions()["app_cookie"] == "1" && r.Header["Cookie"] != nil && w.header["Cookie"] == nil {
			ok.HeadersToRemove = append(ok.HeadersToRemove, "cookie")
		}
		return &authv3.CheckResponse{
			Status:       &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
		}
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(deniedCode(code))},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(code)},
			Headers: headerOptions(w.header),
			Body:    w.body.String(),
		}},
	}
}

// deniedCode is the gRPC code of a refusal with HTTP status code.
func deniedCode(code int) codes.Code {
	switch code {
	case http.StatusUnauthorized, http.StatusFound:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	if code >= 500 {
		return codes.Internal
	}
	return codes.InvalidArgument
}

// headerOptions are the headers of h but those named in skip, in lower
// case and sorted, each set to its values joined with "," and replacing
// any header of that name.
func headerOptions(h http.Header, skip ...string) []*corev3.HeaderValueOption {
	keys := make([]string, 0, len(h))
	for k := range h {
		if !slices.Contains(skip, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	opts := make([]*corev3.HeaderValueOption, len(keys))
	for i, k := range keys {
		opts[i] = &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: strings.ToLower(k), Value: strings.Join(h[k], ",")},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}
	}
	return opts
}

// envoySets are the headers among strippedHeaders that Envoy itself sets
// from the connection for the app (use_remote_address,
// forward_client_cert_details): they are Envoy's to keep or drop.
var envoySets = []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Host", "X-Forwarded-Client-Cert", "X-Envoy-External-Address"}

// spoofed lists, in lower case and sorted, the headers of the request h
// describes that sessiond's answer set does not replace and that an app
// could take for the identity: every name with "_" (CGI, WSGI and Rack
// read Remote_User as Remote-User), and every name of strippedHeaders
// (Remote-Email, Remote-Name, X-Forwarded-User, X-Session-…) that set
// does not hold and Envoy does not set itself (envoySets).
func spoofed(h *authv3.AttributeContext_HttpRequest, set http.Header) []string {
	var out []string
	check := func(name string) {
		k := http.CanonicalHeaderKey(name)
		if name == "" || name[0] == ':' {
			return
		}
		if strings.Contains(k, "_") || isStripped(k) && set[k] == nil && !slices.Contains(envoySets, k) {
			out = append(out, strings.ToLower(k))
		}
	}
	for name := range h.GetHeaders() {
		check(name)
	}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		check(hv.GetKey())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// answer is the http.ResponseWriter answerResolve writes a check's answer
// to.
type answer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (a *answer) Header() http.Header { return a.header }

func (a *answer) WriteHeader(status int) {
	if a.status == 0 {
		a.status = status
	}
}

func (a *answer) Write(b []byte) (int, error) {
	a.WriteHeader(http.StatusOK)
	return a.body.Write(b)
}
