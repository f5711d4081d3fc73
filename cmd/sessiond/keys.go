package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/assertion"
)

// assertionConfig is the assertion Issuer's configuration from o, with
// issuer the public URL.
func (o *options) assertionConfig(issuer *url.URL) assertion.Config {
	iss := ""
	if issuer != nil {
		iss = strings.TrimSuffix(issuer.String(), "/")
	}
	return assertion.Config{Issuer: iss, Audience: o.assertionAudience, KeyLifetime: o.assertionKeyLifetime}
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
		u = o.store
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
	k, err := assertion.Rotate(c.ctx, ks, c.opts.assertionConfig(nil))
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
	fmt.Fprintln(tw, "ID\tPUBLISHED\tSIGNS FROM\tSTATE")
	for _, k := range assertion.Describe(keys, time.Now()) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.CreatedAt.Format(time.RFC3339), k.SignFrom.Format(time.RFC3339), k.State)
	}
	return tw.Flush()
}
