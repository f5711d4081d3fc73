package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/users"
)

// admin runs "sessiond users ..." and "sessiond sessions ...", against the
// same stores a running server uses, through the application layer with
// the command line as the actor.
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
	st, err := open(o, stderr)
	if err != nil {
		return err
	}
	defer st.close()
	c := &cli{app: st.app, ctx: ctx, stdout: stdout}
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
		return c.changed(c.app.SetRoles(ctx, app.CLI, pos[0], splitList(pos[1])))
	case "users disable", "users enable":
		if err := need(1, "a username"); err != nil {
			return err
		}
		return c.changed(c.app.SetDisabled(ctx, app.CLI, pos[0], sub == "users disable"))
	case "users delete":
		if err := need(1, "a username"); err != nil {
			return err
		}
		return c.changed(c.app.DeleteUser(ctx, app.CLI, pos[0]))
	case "users list":
		return c.listUsers()
	case "sessions list":
		if err := need(1, "a username"); err != nil {
			return err
		}
		return c.listSessions(pos[0])
	case "sessions revoke":
		if user != "" {
			return c.changed(c.app.RevokeUserSessions(ctx, app.CLI, user))
		}
		if err := need(1, "a session ID, or --user NAME"); err != nil {
			return err
		}
		if err := c.app.RevokeSession(ctx, app.CLI, "", pos[0]); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "revoked 1 session")
		return nil
	}
	return fmt.Errorf("unknown command %q (see sessiond help)", sub)
}

type cli struct {
	app    *app.App
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
	u, err := c.app.CreateUser(c.ctx, app.CLI, name, pw, roles)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "created user %s (%s)\n", u.Username, u.ID)
	if generated {
		fmt.Fprintf(c.stdout, "password: %s\n", pw)
	}
	return nil
}

func (c *cli) passwd(name string, getenv func(string) string, stdin io.Reader) error {
	pw, generated := password(getenv, stdin)
	if err := c.changed(c.app.ResetPassword(c.ctx, app.CLI, name, pw)); err != nil {
		return err
	}
	if generated {
		fmt.Fprintf(c.stdout, "password: %s\n", pw)
	}
	return nil
}

// changed reports a change of user u that ended n sessions, or err.
func (c *cli) changed(u *users.User, n int, err error) error {
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s: done; ended %d session(s)\n", u.Username, n)
	return nil
}

// cliError words err for the command line: the message a client of the
// API would see, or err itself for a technical failure.
func cliError(err error) error {
	if e := app.ErrorOf(err); e != nil {
		return errors.New(e.Message)
	}
	return err
}

func (c *cli) listUsers() error {
	list, err := c.app.Users(c.ctx, app.CLI)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tID\tROLES\tSTATUS")
	for _, u := range list {
		status := "active"
		if u.Disabled {
			status = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Username, u.ID, strings.Join(u.Roles, ","), status)
	}
	return tw.Flush()
}

func (c *cli) listSessions(name string) error {
	_, list, err := c.app.UserSessions(c.ctx, app.CLI, name)
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
