// Package doctor holds `exewall doctor`: what this machine supports, and
// what to do about what it does not. It needs no daemon.
package doctor

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/cmd/exewall/internal/commands"
	"github.com/exewall/exewall/cmd/exewall/internal/platform"
	"github.com/exewall/exewall/engine"
)

// Command runs the checks.
var Command = &cli.Command{
	Name:  "doctor",
	Usage: "check what this machine supports, and say what to do about what it does not",
	Description: `On Linux it reports the kernel, BTF, the cgroup v2 mount, bpffs,
capabilities, which eBPF hook types load, whether exewall's programs pass
the verifier, and which programs (exewall's and others') are attached to the
cgroup. On macOS it reports pf, whether the main ruleset evaluates exewall's
anchor, and pflog; on Windows, elevation and the WFP engine. Each line says
what works or what to do. It needs no daemon and changes nothing.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "cgroup", Usage: "the cgroup v2 directory the daemon attaches to (Linux; default: the root)"},
		&cli.StringFlag{Name: "pin-dir", Value: platform.DefaultPinDir, Usage: "the daemon's pin directory (Linux)"},
		commands.JSONFlag,
	},
	Action: func(cliContext *cli.Context) error {
		if _, err := commands.Args(cliContext, 0); err != nil {
			return err
		}
		checks := platform.Checks(cliContext.Context, platform.Config{Cgroup: cliContext.String("cgroup"), PinDir: cliContext.String("pin-dir")})
		w := cliContext.App.Writer
		if cliContext.Bool("json") {
			if checks == nil {
				checks = []engine.Check{}
			}
			if err := commands.PrintJSON(w, checks); err != nil {
				return err
			}
		} else {
			tw := commands.Table(w)
			for _, c := range checks {
				mark := "ok"
				if !c.OK {
					mark = "FAIL"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", mark, c.Name, commands.Q(c.Detail))
			}
			tw.Flush()
		}
		// A FAIL line is a finding, not a failure of the command: optional
		// hooks (fentry, lsm) are refused on many kernels exewall runs on.
		return nil
	},
}
