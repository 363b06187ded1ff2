// Package apply holds `apply -f FILE` and `confirm`.
package apply

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/cmd/exewall/internal/commands"
	"github.com/exewall/exewall/cmd/exewall/internal/platform"
	"github.com/exewall/exewall/engine"
)

// Command replaces the whole policy.
var Command = &cli.Command{
	Name:      "apply",
	Usage:     "replace the whole policy with a policy file, atomically",
	ArgsUsage: "-f FILE [--confirm-within D] [--force]",
	Description: `Validates FILE and puts it in force in one step: no connection is judged
by a mix of the old and new policy. An invalid file is refused with the
line at fault and the policy in force stays. FILE becomes the daemon's
policy file, comments included. "-" reads standard input. A file with no
policy in it (empty, or only comments) is refused, as the daemon refuses it
at start; for no rules at all, apply "rules: []".

With --confirm-within D the previous policy comes back by itself after D
unless "exewall confirm" runs first: try a policy over SSH without the risk
of locking yourself out.

A policy that would stop a server listening now on a non-loopback address
from accepting peers it accepts today is refused, naming the program and
port, unless --force is given.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "the policy `FILE` to apply (\"-\": standard input)"},
		&cli.DurationFlag{Name: "confirm-within", Usage: "roll back to the previous policy unless exewall confirm runs within `D` (e.g. 2m)"},
		commands.ForceFlag,
	},
	Action: func(cliContext *cli.Context) error {
		if args := cliContext.Args().Slice(); len(args) == 1 && cliContext.String("file") == "" {
			return commands.Usagef("the file is given with -f (usage: exewall apply -f %s [--confirm-within D])", args[0])
		}
		if _, err := commands.Args(cliContext, 0); err != nil {
			return err
		}
		file := cliContext.String("file")
		if file == "" {
			return commands.Usagef("-f FILE is required (usage: exewall apply -f FILE [--confirm-within D])")
		}
		within := cliContext.Duration("confirm-within")
		if within < 0 {
			return commands.Usagef("--confirm-within must be positive")
		}
		data, err := engine.ReadPolicyFile(file)
		if err != nil {
			return err
		}
		if engine.EmptyPolicy(data) {
			// Refused here with the reason a daemon gives at start: such a
			// file, once written, would keep the daemon from starting.
			return fmt.Errorf("%s: %w; for no rules at all, write `rules: []`; the policy in force is unchanged", file, engine.ErrEmptyPolicyFile)
		}
		resp, err := commands.ChangeClient(cliContext).Apply(cliContext.Context, data, within)
		if err != nil {
			var re *client.Error
			if errors.As(err, &re) && re.Line > 0 {
				return fmt.Errorf("%s: %s; the policy in force is unchanged", file, re.Message)
			}
			return err
		}
		w := cliContext.App.Writer
		fmt.Fprintf(w, "applied %s: %d rules in force\n", file, resp.Rules)
		if p, err := engine.Parse(data); err == nil && platform.ExeRuleNote != "" {
			for _, r := range p.Rules {
				if r.Exe != "" {
					fmt.Fprintf(w, "note: rule %s: %s\n", commands.Q(r.Name), platform.ExeRuleNote)
				}
			}
		}
		if resp.ConfirmDeadline != nil {
			fmt.Fprintf(w, "run `exewall confirm` before %s (in %s) or the previous policy comes back\n",
				resp.ConfirmDeadline.Format(time.TimeOnly), within)
		}
		return nil
	},
}

// ConfirmCommand keeps a policy applied with --confirm-within.
var ConfirmCommand = &cli.Command{
	Name:  "confirm",
	Usage: "keep the policy of the last `apply --confirm-within`",
	Action: func(cliContext *cli.Context) error {
		if _, err := commands.Args(cliContext, 0); err != nil {
			return err
		}
		if err := commands.Client(cliContext).Confirm(cliContext.Context); err != nil {
			return err
		}
		fmt.Fprintln(cliContext.App.Writer, "confirmed: the applied policy stays")
		return nil
	},
}
