package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/assertion"
)

// assertionConfig is the assertion Issuer's configuration from o, with
// issuer the public URL, and the key secrets read from
// --assertion-key-secret-file.
func (o *options) assertionConfig(issuer *url.URL) (assertion.Config, error) {
	iss := ""
	if issuer != nil {
		iss = strings.TrimSuffix(issuer.String(), "/")
	}
	secrets, err := readKeySecrets(o.assertionKeySecretFile)
	return assertion.Config{Issuer: iss, Audience: o.assertionAudience, KeyLifetime: o.assertionKeyLifetime, KeySecrets: secrets}, err
}

// readKeySecrets reads the key-encryption keys in the file at path: one
// a line, 32 bytes in base64, the first sealing new keys; blank lines and
// lines starting with # are skipped. No path: none. Errors never quote
// the file.
func readKeySecrets(path string) ([][]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--assertion-key-secret-file: %w", err)
	}
	var secrets [][]byte
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := base64.StdEncoding.DecodeString(line)
		if err != nil || len(s) != 32 {
			return nil, fmt.Errorf("--assertion-key-secret-file %s:%d: want 32 random bytes in base64, as `openssl rand -base64 32` writes them", path, n+1)
		}
		secrets = append(secrets, s)
	}
	if len(secrets) == 0 {
		return nil, fmt.Errorf("--assertion-key-secret-file %s: no secret in it; `openssl rand -base64 32` makes one", path)
	}
	return secrets, nil
}

// assertionFlags rewords assertion.Config.Validate's messages with the
// flags that set each field.
var assertionFlags = strings.NewReplacer(
	"assertion: audience", "--assertion-audience",
	"assertion: key lifetime", "--assertion-key-lifetime",
	"assertion: the issuer", "--public-url",
	"assertion: ", "--assertion: ",
)

// openKeys opens the assertion keys where the accounts are: the --users
// database, or the --store one.
func openKeys(ctx context.Context, o *options) (assertion.KeyStore, error) {
	u := o.usersURL()
	if u == "" {
		u = app.DatabaseURL(o.store)
	}
	st, err := app.ParseStoreURL(u)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch st.Kind {
	case "sqlite":
		return assertion.OpenSQLite(st.Path)
	case "postgres":
		ks, err := assertion.OpenPostgres(ctx, st.Path)
		if err != nil {
			return nil, errors.New(strings.ReplaceAll(err.Error(), st.Path, app.RedactURL(st.Path)))
		}
		return ks, nil
	}
	return nil, fmt.Errorf("%s keeps no assertion keys: they are kept with the accounts (sqlite:PATH or postgres://...)", app.RedactURL(u))
}

func (c *cli) rotateKeys() error {
	ks, err := openKeys(c.ctx, c.opts)
	if err != nil {
		return err
	}
	defer ks.Close()
	cfg, err := c.opts.assertionConfig(nil)
	if err != nil {
		return err
	}
	k, err := assertion.Rotate(c.ctx, ks, cfg)
	switch {
	case errors.Is(err, assertion.ErrKeyWaiting):
		fmt.Fprintf(c.stdout, "key %s is already published and signs from %s; nothing changed\n", k.ID, k.SignFrom.Format(time.RFC3339))
		return nil
	case err != nil:
		return err
	}
	fmt.Fprintf(c.stdout, "published key %s; it signs from %s\n", k.ID, k.SignFrom.Format(time.RFC3339))
	return nil
}

func (c *cli) listKeys() error {
	ks, err := openKeys(c.ctx, c.opts)
	if err != nil {
		return err
	}
	defer ks.Close()
	keys, err := ks.Keys(c.ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPUBLISHED\tSIGNS FROM\tSTATE\tPRIVATE KEY")
	for _, k := range assertion.Describe(keys, time.Now()) {
		stored := "unsealed"
		if k.Sealed {
			stored = "sealed"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.CreatedAt.Format(time.RFC3339), k.SignFrom.Format(time.RFC3339), k.State, stored)
	}
	return tw.Flush()
}
