// Package reset holds `exewall reset`.
package reset

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/cmd/exewall/internal/commands"
	"github.com/exewall/exewall/cmd/exewall/internal/platform"
)

// Command removes everything exewall put in the kernel.
var Command = &cli.Command{
	Name:  "reset",
	Usage: "remove everything exewall put in the kernel (programs, pins, filters, anchors)",
	Description: `Works without a daemon. On Linux it unpins what exewall left under
--pin-dir, which detaches its programs; on macOS it flushes the pf anchor
com.apple/exewall and hands back the pf reference kept in --state-dir; on
Windows it deletes exewall's WFP filters, sublayer and provider. A running
daemon keeps its enforcement in place, so stop it first. The policy file is
not touched.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "pin-dir", Value: platform.DefaultPinDir, Usage: "where the daemon pinned its objects (Linux)"},
		&cli.StringFlag{Name: "state-dir", Value: platform.DefaultStateDir, Usage: "the daemon's state directory (macOS: holds pf's enable token)"},
	},
	Action: func(cliContext *cli.Context) error {
		if _, err := commands.Args(cliContext, 0); err != nil {
			return err
		}
		socket := cliContext.String(commands.SocketFlag.Name)
		if _, err := commands.Client(cliContext).Status(cliContext.Context); err == nil {
			return fmt.Errorf("a daemon is running on %s and keeps its enforcement in place; stop it first", socket)
		}
		done, err := platform.Reset(cliContext.Context, platform.Config{
			PinDir:   cliContext.String("pin-dir"),
			StateDir: cliContext.String("state-dir"),
		})
		if err != nil {
			return fmt.Errorf("reset: %w", err)
		}
		fmt.Fprintln(cliContext.App.Writer, done)
		return nil
	},
}
