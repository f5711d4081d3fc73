package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/users"
)

// actorCLI names the command line as the actor in audit events.
const actorCLI = "cli"

// admin runs "sessiond users ..." and "sessiond sessions ...", against the
// same stores a running server uses.
func admin(ctx context.Context, group string, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	var roles, user string
	o, pos, err := parseOptions("sessiond "+group, args, getenv, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&roles, "roles", "", "comma-separated roles (users add)")
		fs.StringVar(&user, "user", "", "revoke every session of this user (sessions revoke)")
	})
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fmt.Errorf("%s: which subcommand? (see sessiond help)", group)
	}
	a, err := open(o, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	c := &cli{app: a, ctx: ctx, stdout: stdout}
	sub, pos := group+" "+pos[0], pos[1:]
	need := func(n int, what string) error {
		if len(pos) != n {
			return fmt.Errorf("%s takes %s", sub, what)
		}
		return nil
	}
	switch sub {
	case "users add":
		if err := need(1, "a username"); err != nil {
			return err
		}
		return c.addUser(pos[0], splitList(roles), getenv, stdin)
	case "users passwd":
		if err := need(1, "a username"); err != nil {
			return err
		}
		return c.passwd(pos[0], getenv, stdin)
	case "users roles":
		if err := need(2, "a username and a comma-separated list of roles (\"\" for none)"); err != nil {
			return err
		}
		return c.change(pos[0], "roles.changed", func(u *users.User) error { return a.accounts.SetRoles(ctx, u, splitList(pos[1])) })
	case "users disable", "users enable":
		if err := need(1, "a username"); err != nil {
			return err
		}
		disable := sub == "users disable"
		return c.change(pos[0], map[bool]string{true: "user.disabled", false: "user.enabled"}[disable], func(u *users.User) error { return a.accounts.SetDisabled(ctx, u, disable) })
	case "users list":
		return c.listUsers()
	case "sessions list":
		if err := need(1, "a username"); err != nil {
			return err
		}
		return c.listSessions(pos[0])
	case "sessions revoke":
		if user != "" {
			return c.change(user, "", nil)
		}
		if err := need(1, "a session ID, or --user NAME"); err != nil {
			return err
		}
		if err := a.srv.Sessions().Revoke(ctx, pos[0], actorCLI, "revoked from the command line"); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "revoked 1 session")
		return nil
	}
	return fmt.Errorf("unknown command %q (see sessiond help)", sub)
}

type cli struct {
	*app
	ctx    context.Context
	stdout io.Writer
}

func splitList(s string) []string {
	out := []string{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// password reads a new password from SESSIOND_PASSWORD, else the first
// line of stdin if it is not a terminal, else generates one.
func password(getenv func(string) string, stdin io.Reader) (pw string, generated bool) {
	if pw := getenv("SESSIOND_PASSWORD"); pw != "" {
		return pw, false
	}
	if stdin != nil {
		if line, err := bufio.NewReader(stdin).ReadString('\n'); err == nil || line != "" {
			if line = strings.TrimRight(line, "\r\n"); line != "" {
				return line, false
			}
		}
	}
	return rand.Text(), true
}

func (c *cli) addUser(name string, roles []string, getenv func(string) string, stdin io.Reader) error {
	pw, generated := password(getenv, stdin)
	u, err := c.accounts.Add(c.ctx, name, pw, roles)
	if err != nil {
		return err
	}
	c.srv.Record(c.ctx, audit.Event{Type: "user.created", UserID: u.ID, Username: u.Username, Actor: actorCLI})
	fmt.Fprintf(c.stdout, "created user %s (%s)\n", u.Username, u.ID)
	if generated {
		fmt.Fprintf(c.stdout, "password: %s\n", pw)
	}
	return nil
}

func (c *cli) passwd(name string, getenv func(string) string, stdin io.Reader) error {
	pw, generated := password(getenv, stdin)
	if err := c.change(name, "password.changed", func(u *users.User) error { return c.accounts.SetPassword(c.ctx, u, pw) }); err != nil {
		return err
	}
	if generated {
		fmt.Fprintf(c.stdout, "password: %s\n", pw)
	}
	return nil
}

// change applies fn (if any) to the user and ends all their sessions: a
// change of password, roles or status is a change of privilege.
func (c *cli) change(name, event string, fn func(*users.User) error) error {
	u, err := c.accounts.Lookup(c.ctx, name)
	if err != nil {
		return err
	}
	if fn != nil {
		if err := fn(u); err != nil {
			return err
		}
		c.srv.Record(c.ctx, audit.Event{Type: event, UserID: u.ID, Username: u.Username, Actor: actorCLI})
	}
	reason := event
	if reason == "" {
		reason = "revoked from the command line"
	}
	n, err := c.srv.Sessions().RevokeUser(c.ctx, u.ID, "", actorCLI, reason)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s: done; ended %d session(s)\n", u.Username, n)
	return nil
}

func (c *cli) listUsers() error {
	list, err := c.accounts.Directory().List(c.ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tID\tROLES\tSTATUS")
	for _, u := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Username, u.ID, strings.Join(u.Roles, ","), map[bool]string{true: "disabled", false: "active"}[u.Disabled])
	}
	return tw.Flush()
}

func (c *cli) listSessions(name string) error {
	u, err := c.accounts.Lookup(c.ctx, name)
	if err != nil {
		return err
	}
	list, err := c.srv.Sessions().List(c.ctx, u.ID)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tLAST SEEN\tIP\tUSER AGENT")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID, s.CreatedAt.UTC().Format(time.RFC3339), s.LastSeenAt.UTC().Format(time.RFC3339), s.LastIP, s.LastUserAgent)
	}
	return tw.Flush()
}
