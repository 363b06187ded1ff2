// Package daemon holds `exewall daemon`.
package daemon

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/cmd/exewall/internal/commands"
	"github.com/exewall/exewall/cmd/exewall/internal/daemon"
	"github.com/exewall/exewall/cmd/exewall/internal/platform"
)

// Command runs the daemon in the foreground.
var Command = &cli.Command{
	Name:  "daemon",
	Usage: "run the daemon that enforces the policy (foreground)",
	Description: `Loads the enforcement backend, puts the policy file in force and serves
the other commands on --socket. A missing policy file is created with
"default: allow" and no rules. The daemon follows the file (edits are
picked up on save, and on SIGHUP); when it cannot write the file it runs
managed and refuses CLI edits. On SIGTERM enforcement stays in the kernel,
and the next daemon adopts it, unless --detach-on-exit.

` + "`exewall service install`" + ` runs it at boot: as a systemd unit on Linux, a
LaunchDaemon on macOS, and on Windows as the exewall service, where it logs
to exewall.log in --state-dir unless --log says otherwise.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "policy", Value: platform.DefaultPolicy, Usage: "the policy file"},
		&cli.StringFlag{Name: "cgroup", Usage: "cgroup v2 directory to attach to (Linux; default: the cgroup v2 root)"},
		&cli.StringFlag{Name: "pin-dir", Value: platform.DefaultPinDir, Usage: "bpffs directory for pinned programs, links, maps (Linux)"},
		&cli.StringFlag{Name: "state-dir", Value: platform.DefaultStateDir, Usage: "where violations.log is kept"},
		&cli.StringFlag{Name: "log", Usage: "log to this file instead of stderr"},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json"},
		&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics on this address (e.g. 127.0.0.1:9323)"},
		&cli.BoolFlag{Name: "detach-on-exit", Usage: "remove enforcement from the kernel when the daemon stops"},
		&cli.DurationFlag{Name: "sync-interval", Value: 30 * time.Second, Usage: "how often to check the kernel for tampering (0: never)"},
		&cli.Int64Flag{Name: "violations-log-size", Value: 10 << 20, Usage: "rotate violations.log at this many bytes", Hidden: true},
	},
	Action: func(cliContext *cli.Context) error {
		if _, err := commands.Args(cliContext, 0); err != nil {
			return err
		}
		switch f := cliContext.String("log-format"); f {
		case "text", "json":
		default:
			return commands.Usagef("--log-format %q: want text or json", f)
		}
		cfg := daemon.Config{
			Socket:       cliContext.String(commands.SocketFlag.Name),
			Policy:       cliContext.String("policy"),
			Cgroup:       cliContext.String("cgroup"),
			PinDir:       cliContext.String("pin-dir"),
			StateDir:     cliContext.String("state-dir"),
			LogFile:      cliContext.String("log"),
			LogFormat:    cliContext.String("log-format"),
			MetricsAddr:  cliContext.String("metrics-addr"),
			DetachOnExit: cliContext.Bool("detach-on-exit"),
			SyncInterval: cliContext.Duration("sync-interval"),
			LogMaxSize:   cliContext.Int64("violations-log-size"),
		}
		return platform.ServeDaemon(cliContext.Context, func(ctx context.Context, asService bool) error {
			if asService && cfg.LogFile == "" {
				// A service has no stderr: its log goes to the state dir.
				dir := cmp.Or(cfg.StateDir, platform.DefaultStateDir)
				if err := os.MkdirAll(dir, 0o700); err != nil {
					return fmt.Errorf("create state dir: %w", err)
				}
				cfg.LogFile = filepath.Join(dir, "exewall.log")
			}
			return daemon.Run(ctx, cfg)
		})
	},
}
