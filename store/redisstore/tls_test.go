package redisstore

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session/storetest"
)

// TestTLS runs the conformance suite over rediss:// against a redis-server
// with a certificate from a test CA, and checks that the server's
// certificate is verified.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	pki := testenv.WritePKI(t, dir, "127.0.0.1")
	caFile, certFile, keyFile := pki.CAFile, pki.CertFile, pki.KeyFile
	tlsPort := testenv.FreePort(t)
	testenv.StartRedis(t, "--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile,
		"--tls-auth-clients", "no")
	// The plain port answered; give the TLS one a moment too.
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
	for range 100 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	if _, err := Open(ctx, "rediss://"+addr+"/?timeout=1s"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("rediss:// to a server whose CA the client does not trust: got %v, want a certificate error", err)
	}
	url := fmt.Sprintf("rediss://%s/?ca_file=%s", addr, caFile)
	storetest.Run(t, harness(func(t *testing.T) *Store { return openTest(t, withOptions(url, "prefix", testPrefix())) }))
}
