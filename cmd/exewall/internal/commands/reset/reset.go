// Package reset holds `exewall reset`.
package reset

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/cmd/exewall/internal/commands"
	"github.com/exewall/exewall/cmd/exewall/internal/daemon"
)

// Command removes everything exewall put in the kernel.
var Command = &cli.Command{
	Name:  "reset",
	Usage: "remove everything exewall put in the kernel (programs, links, maps, pins)",
	Description: `Works without a daemon: it unpins what exewall left under --pin-dir, which
detaches its programs. A running daemon holds its programs attached, so
stop it first. The policy file is not touched.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "pin-dir", Value: daemon.DefaultPinDir, Usage: "where the daemon pinned its objects"},
	},
	Action: func(cliContext *cli.Context) error {
		if _, err := commands.Args(cliContext, 0); err != nil {
			return err
		}
		socket := cliContext.String(commands.SocketFlag.Name)
		if _, err := commands.Client(cliContext).Status(cliContext.Context); err == nil {
			return fmt.Errorf("a daemon is running on %s and holds its programs attached; stop it first", socket)
		}
		if err := daemon.Reset(cliContext.String("pin-dir")); err != nil {
			return fmt.Errorf("reset: %w", err)
		}
		fmt.Fprintf(cliContext.App.Writer, "removed exewall's programs, links and maps (%s)\n", cliContext.String("pin-dir"))
		return nil
	},
}
