// Package doctor holds `exewall doctor`: what this machine supports, and
// what to do about what it does not. It needs no daemon.
package doctor

import (
	"fmt"
	"os"
	"strings"

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
anchor, and pflog; on Windows, elevation and the WFP engine. It needs root
(an administrator on Windows), no daemon, and changes nothing.

Each line starts with "ok" (works), "FAIL" (exewall cannot enforce without
it: the line says what to do) or "absent" (an optional hook this machine
refuses: the line says what it would add). Exit status 1 when a line says
FAIL, else 0.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "cgroup", Usage: "the cgroup v2 directory the daemon attaches to (Linux; default: the root)"},
		&cli.StringFlag{Name: "pin-dir", Value: platform.DefaultPinDir, Usage: "the daemon's pin directory (Linux)"},
		commands.JSONFlag,
	},
	Action: func(cliContext *cli.Context) error {
		if _, err := commands.Args(cliContext, 0); err != nil {
			return err
		}
		if uid := os.Geteuid(); uid > 0 {
			// Without root the kernel refuses every probe, and what is
			// pinned or attached cannot even be listed: each finding
			// would be wrong.
			return fmt.Errorf("doctor needs root: as uid %d the kernel refuses its probes; run `sudo exewall doctor`", uid)
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
				mark, detail := "ok", c.Detail
				switch {
				case !c.OK && c.Finding:
					mark = "WARN"
				case !c.OK && c.Optional:
					mark, detail = "absent", "optional: "+c.Detail
				case !c.OK:
					mark = "FAIL"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", mark, c.Name, commands.Q(detail))
			}
			tw.Flush()
		}
		// Optional hooks are refused on many kernels exewall runs on:
		// only what it cannot enforce without fails the command.
		var failed []string
		for _, c := range checks {
			if !c.OK && !c.Optional && !c.Finding {
				failed = append(failed, c.Name)
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("%d checks failed (%s): see the FAIL lines", len(failed), strings.Join(failed, ", "))
		}
		return nil
	},
}
