package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/users"
)

// admin runs c, one of the "users", "sessions" and "keys" commands, against the
// same stores a running server uses, through the application layer with
// the command line as the actor. Every command but users add refuses to
// start a new, empty SQLite database.
func admin(ctx context.Context, c *command, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	var f cmdFlags
	var extra func(*flag.FlagSet)
	if c.own != nil {
		extra = func(fs *flag.FlagSet) { c.own(fs, &f) }
	}
	o, pos, err := parseOptions("sessiond "+c.name, args, getenv, stderr, extra)
	if err != nil {
		return err
	}
	if (c.nargs >= 0 && len(pos) != c.nargs) || (c.argsOK != nil && !c.argsOK(pos, &f)) {
		if c.nargs == 0 {
			return &usageError{cmd: c.name, msg: fmt.Sprintf("%s takes no arguments, got %q", c.name, pos)}
		}
		return &usageError{cmd: c.name, msg: fmt.Sprintf("%s takes %s", c.name, c.argsHelp)}
	}
	if !c.creates {
		if err := o.requireDatabase(); err != nil {
			return err
		}
	}
	st, err := open(o, stderr)
	if err != nil {
		return err
	}
	defer st.close()
	return c.run(&cli{app: st.app, opts: o, ctx: ctx, getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}, pos, &f)
}

// cli carries out the account and session commands.
type cli struct {
	app            *app.App
	opts           *options
	ctx            context.Context
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer
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

// errMismatch is the answer to a confirmation that differs from the
// password typed first.
var errMismatch = errors.New("the passwords do not match; nothing changed")

// password returns the new password for user: SESSIOND_PASSWORD if set;
// else, when stdin is a terminal, one typed there twice without echo
// after a prompt on stderr (errMismatch if the two differ; Enter alone
// generates one); else the first line of stdin; else (stdin empty) a
// generated one. generated reports that it made the password up, which
// the caller must show.
func (c *cli) password(user string) (pw string, generated bool, err error) {
	if pw := c.getenv("SESSIOND_PASSWORD"); pw != "" {
		return pw, false, nil
	}
	if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(c.stderr, "New password for %s (Enter alone generates one): ", user)
		first, err := c.readPassword(f)
		if err != nil {
			return "", false, err
		}
		if len(first) == 0 {
			return rand.Text(), true, nil
		}
		fmt.Fprint(c.stderr, "Repeat it: ")
		again, err := c.readPassword(f)
		if err != nil {
			return "", false, err
		}
		if string(first) != string(again) {
			return "", false, errMismatch
		}
		return string(first), false, nil
	}
	if c.stdin != nil {
		if line, err := bufio.NewReader(c.stdin).ReadString('\n'); err == nil || line != "" {
			if line = strings.TrimRight(line, "\r\n"); line != "" {
				return line, false, nil
			}
		}
	}
	return rand.Text(), true, nil
}

// readPassword reads a line from the terminal f without echo. If the
// command's context ends first (Ctrl-C), it puts the terminal back as it
// was, echo included, and returns the context's error: the read it leaves
// behind ends with the process.
func (c *cli) readPassword(f *os.File) ([]byte, error) {
	fd := int(f.Fd())
	state, err := term.GetState(fd)
	if err != nil {
		return nil, fmt.Errorf("reading the password: %w", err)
	}
	type line struct {
		b   []byte
		err error
	}
	read := make(chan line, 1)
	go func() {
		b, err := term.ReadPassword(fd)
		read <- line{b, err}
	}()
	select {
	case l := <-read:
		fmt.Fprintln(c.stderr)
		if l.err != nil {
			return nil, fmt.Errorf("reading the password: %w", l.err)
		}
		return l.b, nil
	case <-c.ctx.Done():
		term.Restore(fd, state)
		fmt.Fprintln(c.stderr)
		return nil, fmt.Errorf("interrupted; nothing changed")
	}
}

func (c *cli) addUser(name string, roles []string) error {
	pw, generated, err := c.password(name)
	if err != nil {
		return err
	}
	u, err := c.app.CreateUser(c.ctx, app.CLI, name, pw, roles)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "created user %s (%s)\n", u.Username, u.ID)
	if generated {
		fmt.Fprintf(c.stdout, "generated password: %s\n", pw)
	}
	return nil
}

func (c *cli) passwd(name string) error {
	pw, generated, err := c.password(name)
	if err != nil {
		return err
	}
	if err := c.changed(c.app.ResetPassword(c.ctx, app.CLI, name, pw)); err != nil {
		return err
	}
	if generated {
		fmt.Fprintf(c.stdout, "generated password: %s\n", pw)
	}
	return nil
}

// revoke ends every session of user, or if user is "" the session whose
// ID is pos[0].
func (c *cli) revoke(pos []string, user string) error {
	if user != "" {
		return c.changed(c.app.RevokeUserSessions(c.ctx, app.CLI, user))
	}
	if err := c.app.RevokeSession(c.ctx, app.CLI, "", pos[0]); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "revoked 1 session")
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
