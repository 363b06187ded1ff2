// Package service holds `exewall service install|uninstall`: the daemon as
// the OS's own service (a systemd unit on Linux, a LaunchDaemon on macOS,
// a Windows service), started at boot and restarted when it dies.
package service

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/cmd/exewall/internal/commands"
	"github.com/exewall/exewall/cmd/exewall/internal/platform"
)

// Command groups install and uninstall.
var Command = &cli.Command{
	Name:        "service",
	Usage:       "install or remove the daemon as a system service (systemd, launchd, Windows service)",
	Subcommands: []*cli.Command{installCommand, uninstallCommand},
}

var installCommand = &cli.Command{
	Name:  "install",
	Usage: "run this exewall binary's daemon at boot, and start it now",
	Description: `Linux: writes /etc/systemd/system/exewall.service (deploy/systemd/exewall.service
with ExecStart pointing at this binary), then runs systemctl daemon-reload
and systemctl enable --now exewall.
macOS: writes the LaunchDaemon /Library/LaunchDaemons/dev.exewall.daemon.plist
and bootstraps it with launchctl.
Windows: registers the exewall service (LocalSystem, automatic start,
restarted on failure) and starts it.
The service runs this binary where it is now: install it in its final place
first (e.g. /usr/local/bin/exewall).`,
	Action: func(cliContext *cli.Context) error {
		if _, err := commands.Args(cliContext, 0); err != nil {
			return err
		}
		exe, err := executable()
		if err != nil {
			return err
		}
		return platform.InstallService(cliContext.Context, exe, cliContext.App.Writer)
	},
}

var uninstallCommand = &cli.Command{
	Name:  "uninstall",
	Usage: "stop the daemon's service and remove it (enforcement stays until `exewall reset`)",
	Description: `Stops the service and removes what install wrote. Stopping the daemon
leaves its enforcement in the kernel, as always: run ` + "`exewall reset`" + ` after
uninstalling to remove it.`,
	Action: func(cliContext *cli.Context) error {
		if _, err := commands.Args(cliContext, 0); err != nil {
			return err
		}
		return platform.UninstallService(cliContext.Context, cliContext.App.Writer)
	},
}

// executable is the absolute path of the running binary, symlinks
// resolved, which the service will run.
func executable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find this executable: %w", err)
	}
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	return filepath.Abs(exe)
}

// resetHint ends every uninstall's report.
