// Package sync holds `exewall sync`.
package sync

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/cmd/exewall/internal/commands"
)

// Command compares the kernel with the policy and repairs what differs.
var Command = &cli.Command{
	Name:  "sync",
	Usage: "find and repair differences between the kernel and the policy",
	Description: `Compares what is in the kernel (programs attached to the cgroup, map
contents, pins) with the policy in force, puts back whatever someone
changed, and lists each difference. The daemon also does this on its own
every --sync-interval and logs a tamper event for each difference. Exits 1
when a difference could not be repaired.`,
	Flags: []cli.Flag{commands.JSONFlag},
	Action: func(cliContext *cli.Context) error {
		if _, err := commands.Args(cliContext, 0); err != nil {
			return err
		}
		drift, err := commands.Client(cliContext).Sync(cliContext.Context)
		if err != nil {
			return err
		}
		w := cliContext.App.Writer
		unrepaired := 0
		for _, d := range drift {
			if !d.Repaired {
				unrepaired++
			}
		}
		if cliContext.Bool("json") {
			if err := commands.PrintJSON(w, client.SyncResponse{Drift: drift}); err != nil {
				return err
			}
		} else if len(drift) == 0 {
			fmt.Fprintln(w, "in sync: the kernel enforces exactly the policy")
		} else {
			for _, d := range drift {
				state := "repaired"
				if !d.Repaired {
					state = "NOT repaired"
				}
				fmt.Fprintf(w, "%s: %s\n", state, commands.Q(d.What))
			}
		}
		if unrepaired > 0 {
			return fmt.Errorf("%d of %d differences could not be repaired", unrepaired, len(drift))
		}
		return nil
	},
}
