package assertion_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sessiond/sessiond/assertion"
	"github.com/sessiond/sessiond/session"
)

func ExampleIssuer() {
	dir, _ := os.MkdirTemp("", "assertion-example")
	defer os.RemoveAll(dir)
	keys, err := assertion.OpenSQLite(filepath.Join(dir, "sessiond.db"))
	if err != nil {
		panic(err)
	}
	defer keys.Close()
	iss, err := assertion.New(context.Background(), keys, assertion.Config{Issuer: "https://login.example.com"})
	if err != nil {
		panic(err)
	}
	defer iss.Close()

	now := time.Now()
	s := &session.Session{ID: "s_1", UserID: "u_1", Roles: []string{"editor"}, AMR: []string{"pwd"},
		AuthenticatedAt: now, IdleDeadline: now.Add(30 * time.Minute), AbsoluteDeadline: now.Add(12 * time.Hour)}
	jwt, err := iss.Assertion(s, "alice", "app.example.com")
	if err != nil {
		panic(err)
	}
	// What the app reads once it has verified the signature against
	// iss.JWKS() (served at /.well-known/jwks.json).
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(jwt, ".")[1])
	var c assertion.Claims
	json.Unmarshal(payload, &c)
	fmt.Println(c.Issuer, c.Audience, c.Subject, c.PreferredUsername, c.Groups, c.ACR, c.Expiry-c.IssuedAt)
	// Output: https://login.example.com app.example.com u_1 alice [editor] aal1 300
}
