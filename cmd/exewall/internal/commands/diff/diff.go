// Package diff holds `exewall diff FILE`: what `apply -f FILE` would change.
package diff

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/cmd/exewall/internal/commands"
	"github.com/exewall/exewall/engine"
)

// Command shows what applying a policy file would change.
var Command = &cli.Command{
	Name:      "diff",
	Usage:     "show what `apply -f FILE` would change",
	ArgsUsage: "FILE",
	Description: `Sends FILE to the daemon, which validates it exactly as apply would
(an invalid file is refused with the line at fault) and lists the
differences with the policy in force: default and mode, rules added (+), removed (-)
and changed (~), with the fields that change. Nothing is changed. "-"
reads standard input.

Exit status, like diff(1): 0 when applying FILE would change nothing, 1
when it would change something, 2 on an error (FILE unreadable or invalid,
no daemon). This is the one command whose exit status 1 is not a refusal.`,
	Flags: []cli.Flag{commands.JSONFlag},
	Action: func(cliContext *cli.Context) error {
		changes, err := run(cliContext)
		if err != nil {
			return &commands.ExitError{Code: 2, Err: err}
		}
		if changes {
			return &commands.ExitError{Code: 1}
		}
		return nil
	},
}

// run prints the differences and reports whether there are any.
func run(cliContext *cli.Context) (bool, error) {
	args, err := commands.Args(cliContext, 1)
	if err != nil {
		return false, err
	}
	file := args[0]
	data, err := engine.ReadPolicyFile(file)
	if err != nil {
		return false, err
	}
	if engine.EmptyPolicy(data) {
		return false, fmt.Errorf("%s: %w", file, engine.ErrEmptyPolicyFile)
	}
	ch, err := commands.Client(cliContext).Diff(cliContext.Context, data)
	if err != nil {
		var re *client.Error
		if errors.As(err, &re) {
			return false, fmt.Errorf("%s: %w", file, err)
		}
		return false, err
	}
	if cliContext.Bool("json") {
		if err := commands.PrintJSON(cliContext.App.Writer, ch); err != nil {
			return false, err
		}
	} else {
		Print(cliContext.App.Writer, ch, file)
	}
	return !ch.None(), nil
}

// Print writes the changes for people.
func Print(w io.Writer, c engine.Changes, file string) {
	if c.None() {
		fmt.Fprintf(w, "no changes: %s says what is in force\n", file)
		return
	}
	if c.Default != nil {
		fmt.Fprintf(w, "~ default: %s -> %s\n", c.Default[0], c.Default[1])
	}
	if c.Mode != nil {
		fmt.Fprintf(w, "~ mode: %s -> %s\n", c.Mode[0], c.Mode[1])
	}
	for _, r := range c.Removed {
		fmt.Fprintf(w, "- rule %s: %s\n", commands.Q(r.Name), commands.Q(r.String()))
	}
	for _, r := range c.Added {
		fmt.Fprintf(w, "+ rule %s: %s\n", commands.Q(r.Name), commands.Q(r.String()))
	}
	for _, r := range c.Changed {
		fmt.Fprintf(w, "~ rule %s: %s\n", commands.Q(r.Name), commands.Q(strings.Join(r.Fields, "; ")))
	}
	fmt.Fprintf(w, "%d added, %d removed, %d changed\n", len(c.Added), len(c.Removed), len(c.Changed))
}
