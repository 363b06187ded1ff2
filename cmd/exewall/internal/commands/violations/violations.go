// Package violations holds `exewall violations`.
package violations

import (
	"context"
	"encoding/json"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/cmd/exewall/internal/commands"
	"github.com/exewall/exewall/engine"
)

// Command lists (and follows) blocked and audited connection attempts.
var Command = &cli.Command{
	Name:  "violations",
	Usage: "show blocked (and audited) connection attempts",
	Description: `Lists the attempts the daemon keeps in memory (the latest 10000; all of
them are also in violations.log under the daemon's --state-dir).
--since takes a duration (10m) or a time (RFC 3339). --follow keeps
printing new ones until interrupted. --json prints one JSON object a line.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "since", Usage: "only attempts newer than this duration ago (e.g. 10m) or time"},
		&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new attempts"},
		commands.JSONFlag,
	},
	Action: func(cliContext *cli.Context) error {
		if _, err := commands.Args(cliContext, 0); err != nil {
			return err
		}
		var since time.Time
		if s := cliContext.String("since"); s != "" {
			if d, err := time.ParseDuration(s); err == nil && d >= 0 {
				since = time.Now().Add(-d)
			} else if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				since = t
			} else {
				return commands.Usagef("--since %q: want a duration such as 10m or an RFC 3339 time", s)
			}
		}
		follow := cliContext.Bool("follow")
		ctx := cliContext.Context
		if follow {
			var stop context.CancelFunc
			ctx, stop = signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
		}
		w := cliContext.App.Writer
		var print func(engine.Violation) error
		var tab *table
		if cliContext.Bool("json") {
			enc := json.NewEncoder(w)
			print = func(v engine.Violation) error { return enc.Encode(v) }
		} else {
			tab = newTable(w, follow)
			print = tab.print
		}
		var err error
		for v, verr := range commands.Client(cliContext).Violations(ctx, since, follow) {
			if err = verr; err == nil {
				err = print(v)
			}
			if err != nil {
				break
			}
		}
		if tab != nil {
			tab.end(err)
		}
		if follow && ctx.Err() != nil {
			return nil // interrupted by the user
		}
		return err
	},
}

func netJoin(addr string, port uint16) string {
	for i := 0; i < len(addr); i++ {
		if addr[i] == ':' {
			return fmt.Sprintf("[%s]:%d", addr, port)
		}
	}
	return fmt.Sprintf("%s:%d", addr, port)
}
