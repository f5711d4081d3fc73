package main

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sessiond/sessiond/app"
)

// command is one of sessiond's commands, with what its help shows.
type command struct {
	// name is how it is called: "serve", "users add".
	name string
	// args are its positional arguments as the usage line shows them.
	args string
	// summary is the one line the command list shows.
	summary string
	// about is the paragraph its own help shows under the usage line.
	about string
	// example is a command line, shown under its help.
	example string
	// own adds the flags of this command alone; nil if none.
	own func(fs *flag.FlagSet, f *cmdFlags)
	// nargs is how many positional arguments it takes, or -1 when
	// argsOK decides; argsHelp words them for the error when they are
	// wrong.
	nargs    int
	argsOK   func(pos []string, f *cmdFlags) bool
	argsHelp string
	// creates is true for the one command that may start a new empty
	// database (users add); every other one needs an existing database.
	creates bool
	// run carries it out; nil for serve, version and help.
	run func(c *cli, pos []string, f *cmdFlags) error
}

// cmdFlags are the values of the flags that belong to one command.
type cmdFlags struct {
	roles string
	user  string
}

// group is a heading of the command list.
type group struct {
	title string
	names []string
}

var groups = []group{
	{"Run the service", []string{"serve"}},
	{"Users", []string{"users add", "users passwd", "users roles", "users disable", "users enable", "users delete", "users reset-second-factors", "users list"}},
	{"Sessions", []string{"sessions list", "sessions revoke"}},
	{"Identity assertions", []string{"keys list", "keys rotate"}},
	{"Other", []string{"webhook-secret", "version", "help"}},
}

const passwordAbout = `At a terminal the password is asked for twice and not shown; Enter alone
generates one. Otherwise it is SESSIOND_PASSWORD, or the first line of
standard input (a pipe). A generated password is printed once.`

var commands = map[string]*command{
	"serve": {
		name: "serve", summary: "run the service (http://127.0.0.1:8080, data in ./sessiond-data/)",
		about: `Serve the login pages, the API and /resolve. The first start creates the
user "admin" with the password in SESSIOND_ADMIN_PASSWORD, or prints a
random one once.`,
		example: "sessiond serve --listen 127.0.0.1:8080 --store sqlite:sessiond-data/sessiond.db",
	},
	"users add": {
		name: "users add", args: "NAME [--roles a,b]", summary: "create a user",
		about:   "Create a user.\n" + passwordAbout,
		example: "sessiond users add alice --roles editor",
		own: func(fs *flag.FlagSet, f *cmdFlags) {
			fs.StringVar(&f.roles, "roles", "", "comma-separated `roles` of the new user (default: none)")
		},
		nargs: 1, argsHelp: "a username", creates: true,
		run: func(c *cli, pos []string, f *cmdFlags) error { return c.addUser(pos[0], splitList(f.roles)) },
	},
	"users passwd": {
		name: "users passwd", args: "NAME", summary: "set a user's password; ends their sessions",
		about:   "Set a user's password and end every session of theirs.\n" + passwordAbout,
		example: "sessiond users passwd alice",
		nargs:   1, argsHelp: "a username",
		run: func(c *cli, pos []string, _ *cmdFlags) error { return c.passwd(pos[0]) },
	},
	"users roles": {
		name: "users roles", args: "NAME ROLES", summary: "set a user's roles; ends their sessions",
		about:   `Replace a user's roles with ROLES, comma-separated ("" for none), and end every session of theirs.`,
		example: "sessiond users roles alice editor,admin",
		nargs:   2, argsHelp: `a username and a comma-separated list of roles ("" for none)`,
		run: func(c *cli, pos []string, _ *cmdFlags) error {
			return c.changed(c.app.SetRoles(c.ctx, app.CLI, pos[0], splitList(pos[1])))
		},
	},
	"users disable": {
		name: "users disable", args: "NAME", summary: "disable a user; ends their sessions",
		about:   "Refuse the user's sign-ins and end every session of theirs; users enable undoes it.",
		example: "sessiond users disable alice",
		nargs:   1, argsHelp: "a username",
		run: func(c *cli, pos []string, _ *cmdFlags) error {
			return c.changed(c.app.SetDisabled(c.ctx, app.CLI, pos[0], true))
		},
	},
	"users enable": {
		name: "users enable", args: "NAME", summary: "let a disabled user sign in again",
		about:   "Let a disabled user sign in again.",
		example: "sessiond users enable alice",
		nargs:   1, argsHelp: "a username",
		run: func(c *cli, pos []string, _ *cmdFlags) error {
			return c.changed(c.app.SetDisabled(c.ctx, app.CLI, pos[0], false))
		},
	},
	"users delete": {
		name: "users delete", args: "NAME", summary: "delete a user; ends their sessions",
		about:   "Delete a user and end every session of theirs; the audit log keeps their history.",
		example: "sessiond users delete alice",
		nargs:   1, argsHelp: "a username",
		run: func(c *cli, pos []string, _ *cmdFlags) error {
			return c.changed(c.app.DeleteUser(c.ctx, app.CLI, pos[0]))
		},
	},
	"users reset-second-factors": {
		name: "users reset-second-factors", args: "NAME", summary: "remove a user's second factors; ends their sessions",
		about:   "Remove the user's authenticator app (TOTP), recovery codes and passkeys, and end every session of theirs: for a user who lost them, the last admin included. They then sign in with their password alone and can set up new ones.",
		example: "sessiond users reset-second-factors alice",
		nargs:   1, argsHelp: "a username",
		run: func(c *cli, pos []string, _ *cmdFlags) error {
			return c.changed(c.app.ResetSecondFactors(c.ctx, app.CLI, pos[0]))
		},
	},
	"users list": {
		name: "users list", summary: "list the users",
		about:   "List every user: username, ID, roles and status.",
		example: "sessiond users list",
		run:     func(c *cli, _ []string, _ *cmdFlags) error { return c.listUsers() },
	},
	"sessions list": {
		name: "sessions list", args: "NAME", summary: "list a user's sessions",
		about:   "List the sessions of a user: ID, when created and last seen, IP and user agent.",
		example: "sessiond sessions list alice",
		nargs:   1, argsHelp: "a username",
		run: func(c *cli, pos []string, _ *cmdFlags) error { return c.listSessions(pos[0]) },
	},
	"sessions revoke": {
		name: "sessions revoke", args: "ID | --user NAME", summary: "end a session, or every session of a user",
		about:   "End the session with this ID, or with --user every session of that user.",
		example: "sessiond sessions revoke --user alice",
		own: func(fs *flag.FlagSet, f *cmdFlags) {
			fs.StringVar(&f.user, "user", "", "end every session of this `user` instead")
		},
		nargs: -1, argsHelp: "a session ID, or --user NAME",
		argsOK: func(pos []string, f *cmdFlags) bool {
			return (len(pos) == 1 && f.user == "") || (len(pos) == 0 && f.user != "")
		},
		run: func(c *cli, pos []string, f *cmdFlags) error { return c.revoke(pos, f.user) },
	},
	"keys list": {
		name: "keys list", summary: "list the keys that sign identity assertions",
		about:   "List the keys of --assertion (ID, when published, when it signs from, state): the waiting one, the one signing, and the retired ones still published until what they signed expires.",
		example: "sessiond keys list",
		run:     func(c *cli, _ []string, _ *cmdFlags) error { return c.listKeys() },
	},
	"keys rotate": {
		name: "keys rotate", summary: "publish a new assertion key, signing after an hour",
		about: `Publish a new key for --assertion at /.well-known/jwks.json at once; every
instance starts signing with it an hour later (verifiers that cache the key
set see it first), and the old one stays published until what it signed has
expired. Running instances take it up within a minute. If a new key is
already waiting, nothing changes. Keys also rotate by themselves every
--assertion-key-lifetime. With --assertion-key-secret-file, the new key's
private key is sealed with the file's first secret.`,
		example: "sessiond keys rotate",
		run:     func(c *cli, _ []string, _ *cmdFlags) error { return c.rotateKeys() },
	},
	"version": {name: "version", summary: "print the version"},
	"webhook-secret": {name: "webhook-secret", summary: "print a new webhook secret (whsec_...) for --webhook-secret",
		about: "Print a new random secret, in Standard Webhooks' format, for --webhook-secret\nor a \"webhook = URL whsec_...\" line of the config file."},
	"help": {name: "help", args: "[COMMAND]", summary: "show the help of sessiond or of a command"},
}

// commonFlags are the flags every command's help shows besides its own:
// where the data is, and the log.
var commonFlags = []string{"store", "users", "config", "log-level"}

// flagGroups order and group the flags in the help of serve.
var flagGroups = []struct {
	title string
	names []string
}{
	{"Listening", []string{"listen", "public-url", "tls-cert", "tls-key", "trusted-proxies", "upstream", "internal-listen", "grpc-listen"}},
	{"Data", []string{"store", "users", "store-timeout", "audit-retention"}},
	{"Sessions", []string{"idle-timeout", "absolute-timeout", "remember-me-timeout", "max-sessions-per-user", "reject-at-limit"}},
	{"Sign-in", []string{"require-second-factor", "require-second-factor-for"}},
	{"Identity assertions", []string{"assertion", "assertion-audience", "assertion-key-lifetime", "assertion-key-secret-file"}},
	{"Cookie", []string{"cookie-name", "cookie-domain", "cookie-samesite", "dev-insecure-cookie"}},
	{"Webhooks", []string{"webhook", "webhook-secret", "webhook-max-attempts", "webhook-max-age", "webhook-timeout"}},
	{"Settings and logs", []string{"config", "log-format", "log-level"}},
}

// writeUsage writes the list of commands.
func writeUsage(w io.Writer) {
	fmt.Fprint(w, "sessiond: secure session management.\n\nUsage: sessiond COMMAND [ARGS] [FLAGS]\n")
	for _, g := range groups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, n := range g.names {
			c := commands[n]
			fmt.Fprintf(w, "  %-34s %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
		}
	}
	fmt.Fprint(w, `
"sessiond help COMMAND" or "sessiond COMMAND --help" shows a command's
flags and an example. Every flag can also be set as SESSIOND_<FLAG> or as
"flag = value" in the file named by --config: the command line beats the
environment, which beats the file. "sessiond help serve" lists them all.
`)
}

// isGroup reports whether name is a group of commands ("users").
func isGroup(name string) bool { return name == "users" || name == "sessions" || name == "keys" }

// writeGroupUsage writes the commands of group ("users", "sessions", "keys").
func writeGroupUsage(w io.Writer, group string) {
	fmt.Fprintf(w, "Usage: sessiond %s COMMAND [ARGS] [FLAGS]\n\n", group)
	for _, g := range groups {
		for _, n := range g.names {
			if c := commands[n]; strings.HasPrefix(n, group+" ") {
				fmt.Fprintf(w, "  %-34s %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
			}
		}
	}
	fmt.Fprintf(w, "\n\"sessiond help %s COMMAND\" shows a command's flags and an example.\n", group)
}

// writeHelp writes the help of c: usage, what it does, its flags (all of
// them, grouped, for serve; its own and commonFlags for the others) and
// an example.
func writeHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: sessiond %s\n", strings.TrimSpace(c.name+" "+c.args))
	if c.about != "" {
		fmt.Fprintf(w, "\n%s\n", c.about)
	}
	if c.name == "version" || c.name == "help" || c.name == "webhook-secret" {
		return
	}
	fs := commandFlags(c, &options{}, &cmdFlags{})
	if c.name == "serve" {
		for _, g := range flagGroups {
			fmt.Fprintf(w, "\n%s:\n", g.title)
			writeFlags(w, fs, g.names)
		}
	} else {
		if c.own != nil {
			var own []string
			fs := flag.NewFlagSet("", flag.ContinueOnError)
			c.own(fs, &cmdFlags{})
			fs.VisitAll(func(f *flag.Flag) { own = append(own, f.Name) })
			fmt.Fprint(w, "\nFlags:\n")
			writeFlags(w, fs, own)
		}
		fmt.Fprint(w, "\nWhere the data is (as for serve; \"sessiond help serve\" for every setting):\n")
		writeFlags(w, fs, commonFlags)
		fmt.Fprint(w, "  (a command logs at warn unless --log-level is set)\n")
	}
	fmt.Fprintf(w, "\nExample:\n  %s\n", c.example)
}

// writeFlags writes the flags of fs named in names, one per line, with
// their defaults.
func writeFlags(w io.Writer, fs *flag.FlagSet, names []string) {
	for _, n := range names {
		f := fs.Lookup(n)
		if f == nil {
			continue
		}
		kind, usage := flag.UnquoteUsage(f)
		left := "--" + f.Name
		if kind != "" {
			left += " " + strings.ToUpper(kind)
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			usage += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "  %-28s %s\n", left, usage)
	}
}

// commandFlags is the flag set of c: every setting of serve, in o, and
// the command's own flags, in f.
func commandFlags(c *command, o *options, f *cmdFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("sessiond "+c.name, flag.ContinueOnError)
	o.flags(fs)
	if c.own != nil {
		c.own(fs, f)
	}
	return fs
}

// lookupCommand finds the command args start with: "serve", or a group
// and one of its commands ("users add"), which may come after flags. It
// returns the command and the other arguments, or a usageError.
func lookupCommand(args []string) (*command, []string, error) {
	name, rest := args[0], args[1:]
	if !isGroup(name) {
		if c := commands[name]; c != nil {
			return c, rest, nil
		}
		return nil, nil, &usageError{msg: fmt.Sprintf("unknown command %q%s", name, suggestCommand(name, ""))}
	}
	for i, a := range rest {
		if c := commands[name+" "+a]; c != nil && !strings.HasPrefix(a, "-") {
			return c, append(rest[:i:i], rest[i+1:]...), nil
		}
	}
	for _, a := range rest {
		if !strings.HasPrefix(a, "-") {
			return nil, nil, &usageError{cmd: name, msg: fmt.Sprintf("unknown command %q%s", name+" "+a, suggestCommand(a, name))}
		}
	}
	return nil, nil, &usageError{cmd: name, msg: name + ": which command?"}
}

// suggestCommand is " (did you mean ...?)" for the command of group
// ("" for the top level) nearest to name, or "".
func suggestCommand(name, group string) string {
	best, bestDist := "", max(2, len(name)/3)+1
	for _, full := range slices.Sorted(maps.Keys(commands)) {
		g, sub, ok := strings.Cut(full, " ")
		if !ok {
			g, sub = "", full
		}
		if group != "" && g != group {
			continue
		}
		if group == "" && g != "" {
			sub = g
		}
		if d := editDistance(name, sub); d < bestDist {
			best, bestDist = strings.TrimSpace(group+" "+sub), d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(` (did you mean "sessiond %s"?)`, best)
}

// selfCommand is the command a person types to run this program again,
// for messages that suggest one: "go run ./cmd/sessiond" when arg0 (the
// program's os.Args[0]) is a binary "go run" built in its temporary
// go-build folder, arg0 as typed when it is a path (./sessiond), else
// "sessiond".
func selfCommand(arg0 string) string {
	dir := filepath.Dir(arg0)
	if filepath.Base(dir) == "exe" && strings.Contains(filepath.ToSlash(dir), "/go-build") {
		return "go run ./cmd/sessiond"
	}
	if strings.ContainsRune(arg0, filepath.Separator) {
		return arg0
	}
	return "sessiond"
}
