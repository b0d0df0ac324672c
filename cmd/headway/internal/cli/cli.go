package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// Exit codes of Run.
const (
	ExitOK      = 0 // the command did what was asked
	ExitFailure = 1 // an operational failure: Redis, a missing entry, a failed check
	ExitUsage   = 2 // a usage error: unknown command or flag, bad or missing argument
)

// DefaultRedisURL is the Redis of --redis-url when neither the flag nor
// REDIS_URL is set.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// EnvRedisURL names the environment variable that gives --redis-url's
// default.
const EnvRedisURL = "REDIS_URL"

// app is one run of the command line. Tests build it directly to inject a
// clock or a hook; Run builds the default one.
type app struct {
	stdout, stderr io.Writer
	env            func(string) string
	now            func() time.Time
	// afterRedrive, when set, runs after each entry moved by dlq redrive
	// (not in a dry run), with the number moved so far.
	afterRedrive func(n int)
}

// Run runs the headway command line with args (without the program name),
// writing results to stdout and diagnostics to stderr, reading REDIS_URL
// through env. It returns the process exit code: ExitOK, ExitFailure or
// ExitUsage. Cancelling ctx interrupts the command between Redis calls.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) int {
	a := &app{stdout: stdout, stderr: stderr, env: env, now: time.Now}
	return a.run(ctx, args)
}

// command is one leaf of the command tree.
type command struct {
	path    string // "dlq redrive"
	args    string // positional arguments of the synopsis, "ID"
	summary string // one line for the command list
	help    string // what it does, for --help
	run     func(a *app, ctx context.Context, c *command, args []string) error
}

// commands lists the commands in the order of the top-level help.
var commands []*command

func init() {
	commands = []*command{statusCommand, dlqListCommand, dlqShowCommand, dlqRedriveCommand,
		outboxParkedCommand, outboxUnparkCommand, outboxDropCommand, catalogExportCommand, catalogCheckCommand}
}

// groups are the command words with subcommands.
var groups = map[string]string{
	"dlq":     "inspect and redrive dead-lettered entries",
	"outbox":  "see and resolve parked outbox rows (PostgreSQL)",
	"catalog": "export the event catalog, check a consumer's handler types",
}

const exitHelp = `Exit status:
  0  success
  1  operational failure (Redis unreachable, entry not found, check failed)
  2  usage error (unknown command or flag, bad or missing argument)
`

func (a *app) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		a.mainUsage(a.stderr)
		return ExitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		a.mainUsage(a.stdout)
		return ExitOK
	case "help":
		if len(args) == 1 {
			a.mainUsage(a.stdout)
			return ExitOK
		}
		return a.run(ctx, append(append([]string{}, args[1:]...), "--help"))
	}
	c, rest, err := a.lookup(args)
	if err != nil {
		return a.exit("", err)
	}
	if c == nil { // a group's own help
		return ExitOK
	}
	return a.exit(c.path, c.run(a, ctx, c, rest))
}

// lookup finds the command named by the first words of args. For a group
// word followed by --help it prints the group's help and returns no command.
func (a *app) lookup(args []string) (*command, []string, error) {
	word := args[0]
	if _, ok := groups[word]; ok {
		if len(args) == 1 {
			a.groupUsage(a.stderr, word)
			return nil, nil, usagef("%s: missing subcommand", word)
		}
		switch args[1] {
		case "-h", "-help", "--help":
			a.groupUsage(a.stdout, word)
			return nil, nil, nil
		}
		path := word + " " + args[1]
		for _, c := range commands {
			if c.path == path {
				return c, args[2:], nil
			}
		}
		return nil, nil, usagef("unknown command %q; run 'headway %s --help'", path, word)
	}
	for _, c := range commands {
		if c.path == word {
			return c, args[1:], nil
		}
	}
	return nil, nil, usagef("unknown command %q; run 'headway --help'", word)
}

// exit turns a command's error into its message and exit code.
func (a *app) exit(path string, err error) int {
	name := "headway"
	if path != "" {
		name += " " + path
	}
	var ue *usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, errHelpShown):
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(a.stderr, "%s: %v\n", name, ue.err)
		if path != "" {
			fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", name)
		}
		return ExitUsage
	default:
		fmt.Fprintf(a.stderr, "%s: %v\n", name, err)
		return ExitFailure
	}
}

func (a *app) mainUsage(w io.Writer) {
	fmt.Fprint(w, `headway operates the Redis streams of headway: status of streams, groups and
consumers; dead-lettered entries and their redrive; parked outbox rows; the
event catalog.

Usage:
  headway <command> [flags] [arguments]

Commands:
`)
	tw := newTable(w)
	for _, c := range commands {
		name := c.path
		if c.args != "" {
			name += " " + c.args
		}
		tw.row("  "+name, c.summary)
	}
	_ = tw.flush()
	fmt.Fprintf(w, `
Run 'headway <command> --help' for a command's flags. Flags may come before or
after arguments; a flag taking a list accepts commas and repetition.

Environment:
  %s     default of --redis-url (else %s)
  %s  default of --database-url (the outbox commands)

%s`, EnvRedisURL, DefaultRedisURL, EnvDatabaseURL, exitHelp)
}

func (a *app) groupUsage(w io.Writer, group string) {
	fmt.Fprintf(w, "headway %s: %s.\n\nCommands:\n", group, groups[group])
	tw := newTable(w)
	for _, c := range commands {
		if strings.HasPrefix(c.path, group+" ") {
			name := c.path
			if c.args != "" {
				name += " " + c.args
			}
			tw.row("  headway "+name, c.summary)
		}
	}
	_ = tw.flush()
	fmt.Fprintf(w, "\nRun 'headway %s <command> --help' for a command's flags.\n", group)
}

// usageError marks an error as the caller's: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// errHelpShown: --help was asked for and printed; exit 0.
var errHelpShown = errors.New("help shown")

// flagSet returns an empty FlagSet for c; parse reports its errors.
func flagSet(c *command) *flag.FlagSet {
	fs := flag.NewFlagSet("headway "+c.path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses args with fs, allowing flags after positional arguments,
// and checks the number of positional arguments. On --help it prints c's
// help to stdout and returns errHelpShown.
func (a *app) parse(c *command, fs *flag.FlagSet, args []string, minArgs, maxArgs int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				a.commandUsage(a.stdout, c, fs)
				return nil, errHelpShown
			}
			return nil, &usageError{err: err}
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch {
	case len(pos) < minArgs:
		return nil, usagef("missing argument %s", c.args)
	case len(pos) > maxArgs && maxArgs == 0:
		return nil, usagef("unexpected argument %q", pos[0])
	case len(pos) > maxArgs:
		return nil, usagef("unexpected argument %q after %s", pos[maxArgs], c.args)
	}
	return pos, nil
}

func (a *app) commandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	synopsis := "headway " + c.path + " [flags]"
	if c.args != "" {
		synopsis += " " + c.args
	}
	fmt.Fprintf(w, "Usage: %s\n\n%s\n\nFlags:\n", synopsis, strings.TrimSpace(c.help))
	printFlags(w, fs)
	fmt.Fprintf(w, "\n%s", exitHelp)
}

// printFlags lists fs's flags in the --name form, sorted by name.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if typ != "" {
			line += " " + typ
		}
		fmt.Fprintf(w, "%s\n      %s", line, usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// listFlag is a repeatable flag whose values may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}
