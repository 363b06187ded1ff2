// Package commands holds what the CLI's commands share: the socket flag,
// the API client, argument checks and output helpers.
package commands

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/cmd/exewall/internal/platform"
)

// SocketFlag selects the daemon; app moves it to the front of the command
// line wherever it was typed, so it works before or after the subcommand.
var SocketFlag = &cli.StringFlag{
	Name:    "socket",
	Usage:   "the daemon's Unix socket (on Windows, its named pipe)",
	Value:   client.DefaultSocket,
	EnvVars: []string{"EXEWALL_SOCKET"},
}

// JSONFlag is taken by every listing command.
var JSONFlag = &cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"}

// ForceFlag is taken by every changing command: make the change even when
// it cuts a socket listening now on a non-loopback address.
var ForceFlag = &cli.BoolFlag{Name: "force", Usage: "make the change even if it cuts a server listening now (named in the refusal)"}

// ChangeClient is Client for a changing command: forced when --force is
// given.
func ChangeClient(cliContext *cli.Context) *client.Client {
	c := Client(cliContext)
	if cliContext.Bool(ForceFlag.Name) {
		return c.Forced()
	}
	return c
}

// Client returns a client for the daemon the user selected.
func Client(cliContext *cli.Context) *client.Client {
	return client.New(cliContext.String(SocketFlag.Name))
}

// Explain adds to a client's error what the user can do about it: start
// the daemon, pass --socket, run as root.
func Explain(err error) error {
	var de *client.DialError
	if !errors.As(err, &de) {
		return err
	}
	switch {
	case errors.Is(err, client.ErrNoDaemon):
		return fmt.Errorf("%w (%s, or pass --socket)", err, platform.StartHint)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: only %s may control exewall", err, platform.AllowedCallers)
	}
	return err
}

// UsageError is a command line that does not fit the command.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a *UsageError.
func Usagef(format string, args ...any) error { return &UsageError{Msg: fmt.Sprintf(format, args...)} }

// Args checks the positional arguments: exactly n of them (n < 0: any
// number), and none that looks like a flag. Go's flag parsing stops at the
// first argument, so `exewall deny /bin/x --audit` would otherwise take
// --audit as a second argument and silently not audit.
func Args(cliContext *cli.Context, n int) ([]string, error) {
	args := cliContext.Args().Slice()
	usage := "usage: exewall " + cliContext.Command.FullName()
	if u := cliContext.Command.ArgsUsage; u != "" {
		usage += " " + u
	}
	for _, a := range args {
		if strings.HasPrefix(a, "-") && a != "-" {
			return nil, Usagef("flag %s given after the arguments; flags go first (%s)", a, usage)
		}
	}
	if n >= 0 && len(args) != n {
		switch {
		case len(args) < n:
			return nil, Usagef("missing argument (%s)", usage)
		default:
			return nil, Usagef("unexpected argument %q (%s)", args[n], usage)
		}
	}
	return args, nil
}

// PrintJSON writes v as indented JSON.
func PrintJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Table returns a tab-aligned writer; call Flush when done.
func Table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// Q makes a value from the kernel or a policy safe to print in a table: a
// process name, path or rule name may hold escape sequences or newlines that
// would erase or forge lines on the terminal. Printable text is returned as
// is; anything else is written as a Go escape (\x1b, \n, \u200b) and a
// backslash as \\, so the output is inert and unambiguous.
func Q(s string) string {
	clean := true
	for _, r := range s {
		if r == '\\' || r == utf8.RuneError || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	// QuoteToGraphic escapes the quote character too; only the outer pair goes.
	return strings.ReplaceAll(q[1:len(q)-1], `\"`, `"`)
}

// ExitError ends the command with Code instead of 1. An empty Err prints
// nothing: the command said what it had to on stdout (`exewall diff`
// exits 1 when there are changes, like diff(1)).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return ""
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode is the process's exit status.
func (e *ExitError) ExitCode() int { return e.Code }
