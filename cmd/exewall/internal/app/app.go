// Package app assembles exewall's command line: the commands of DESIGN.md's
// CLI contract on urfave/cli/v2, with the contract's error behaviour (one
// line on stderr, exit status 1) instead of urfave's help dumps and exit 3.
package app

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/cmd/exewall/internal/commands"
	"github.com/exewall/exewall/cmd/exewall/internal/commands/apply"
	daemoncmd "github.com/exewall/exewall/cmd/exewall/internal/commands/daemon"
	"github.com/exewall/exewall/cmd/exewall/internal/commands/diff"
	"github.com/exewall/exewall/cmd/exewall/internal/commands/doctor"
	"github.com/exewall/exewall/cmd/exewall/internal/commands/learn"
	"github.com/exewall/exewall/cmd/exewall/internal/commands/names"
	"github.com/exewall/exewall/cmd/exewall/internal/commands/reset"
	"github.com/exewall/exewall/cmd/exewall/internal/commands/rules"
	"github.com/exewall/exewall/cmd/exewall/internal/commands/service"
	"github.com/exewall/exewall/cmd/exewall/internal/commands/status"
	synccmd "github.com/exewall/exewall/cmd/exewall/internal/commands/sync"
	"github.com/exewall/exewall/cmd/exewall/internal/commands/violations"
)

// Version is set at build time (-ldflags "-X ...app.Version=...").
var Version = "dev"

const description = `exewall decides, per executable, which networks a program may reach, and
the kernel enforces it for every process running that file.

Start the daemon (as root), then add rules:
   exewall daemon &
   exewall deny /usr/bin/curl          # curl may not use the network
   exewall local-only firefox          # only local networks for firefox
   exewall ls
   exewall violations --follow         # watch what gets blocked

The policy lives in /etc/exewall/policy.yaml: every change is written back
there, and edits to the file are picked up by the daemon.`

// App is exewall's command line.
type App struct{ *cli.App }

// New returns the command line, writing to stdout.
func New() *App { return NewWithWriters(os.Stdout, os.Stderr) }

// NewWithWriters returns the command line writing to out and errOut.
func NewWithWriters(out, errOut io.Writer) *App {
	a := cli.NewApp()
	a.Name = "exewall"
	a.Usage = "per-executable network firewall"
	a.Description = description
	a.Version = Version
	a.Writer, a.ErrWriter = out, errOut
	a.EnableBashCompletion = false
	// "10.0.0.0/8 port 80,443" must stay one destination.
	a.DisableSliceFlagSeparator = true
	a.Flags = []cli.Flag{commands.SocketFlag}
	a.Commands = append(append([]*cli.Command{daemoncmd.Command}, rules.Commands...),
		rules.RuleCommand,
		rules.RmCommand,
		rules.DefaultCommand,
		rules.ModeCommand,
		rules.LsCommand,
		apply.Command,
		apply.ConfirmCommand,
		learn.Command,
		diff.Command,
		violations.Command,
		names.Command,
		synccmd.Command,
		status.Command,
		doctor.Command,
		service.Command,
		reset.Command,
	)
	// urfave exits by itself on ExitCoder errors; main decides instead.
	a.ExitErrHandler = func(*cli.Context, error) {}
	a.OnUsageError = usageError
	a.Action = unknownCommand
	for _, c := range a.Commands {
		setup(c)
	}
	return &App{a}
}

// setup gives every command the one-line usage errors and makes a
// command with subcommands refuse an unknown one. urfave/cli adds its own
// help commands to the (package-level, shared) command tree when it runs;
// those are left alone.
func setup(c *cli.Command) {
	if c.Name == "help" {
		return
	}
	c.OnUsageError = usageError
	if len(c.Subcommands) > 0 {
		c.HideHelpCommand = true
		if c.Action == nil {
			c.Action = unknownCommand
		}
		for _, s := range c.Subcommands {
			setup(s)
		}
	}
}

func usageError(cliContext *cli.Context, err error, isSubcommand bool) error {
	err = usageMessage(cliContext, err)
	if name := commandName(cliContext); name == "exewall diff" {
		// diff exits like diff(1): 1 means "there are changes".
		return &commands.ExitError{Code: 2, Err: err}
	}
	return err
}

func usageMessage(cliContext *cli.Context, err error) error {
	name := commandName(cliContext)
	if flag, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: "); ok {
		if !strings.HasPrefix(flag, "--") && len(flag) > 2 {
			flag = "-" + flag // Go's flag package prints -name for --name too
		}
		return commands.Usagef("unknown flag %s (see `%s --help`)", flag, name)
	}
	return commands.Usagef("%s (see `%s --help`)", err.Error(), name)
}

// unknownCommand is the action of the app and of commands that only group
// subcommands: with no argument it shows help, else it refuses.
func unknownCommand(cliContext *cli.Context) error {
	if !cliContext.Args().Present() {
		return cli.ShowSubcommandHelp(cliContext)
	}
	name := commandName(cliContext)
	return commands.Usagef("unknown command %q (see `%s --help`)", cliContext.Args().First(), name)
}

// commandName is "exewall" followed by the command being run, if any.
func commandName(cliContext *cli.Context) string {
	if cliContext.Command == nil {
		return "exewall"
	}
	name := cliContext.Command.FullName()
	if name == "" || name == "exewall" {
		return "exewall"
	}
	return "exewall " + name
}

// Run runs the command line args (args[0] is the program name).
func (a *App) Run(args []string) error {
	return commands.Explain(a.App.Run(hoistSocket(args)))
}

// hoistSocket moves --socket (in any of its spellings) to just after the
// program name, so it counts as the global flag wherever it was typed:
// urfave/cli v2 has no flags inherited by subcommands.
func hoistSocket(args []string) []string {
	if len(args) == 0 {
		return args
	}
	var hoisted, rest []string
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		switch {
		case a == "--socket" || a == "-socket":
			if i+1 < len(args) {
				hoisted = append(hoisted, a, args[i+1])
				i++
				continue
			}
		case strings.HasPrefix(a, "--socket=") || strings.HasPrefix(a, "-socket="):
			hoisted = append(hoisted, a)
			continue
		}
		rest = append(rest, a)
	}
	out := append([]string{args[0]}, hoisted...)
	return append(out, rest...)
}

// String is for debugging.
func (a *App) String() string { return fmt.Sprintf("exewall %s", a.Version) }
