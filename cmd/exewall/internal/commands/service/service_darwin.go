package service

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/darwin"
)

func install(cliContext *cli.Context, exe string) error {
	if err := darwin.InstallService(exe); err != nil {
		return err
	}
	fmt.Fprintf(cliContext.App.Writer, "installed and started the LaunchDaemon %s (%s), listening on %s; its log is %s\n",
		darwin.ServiceLabel, darwin.PlistPath, darwin.DefaultSocket, darwin.LogPath)
	return nil
}

func uninstall(cliContext *cli.Context) error {
	if err := darwin.UninstallService(); err != nil {
		return err
	}
	fmt.Fprintf(cliContext.App.Writer, "stopped the LaunchDaemon %s and removed %s; %s\n", darwin.ServiceLabel, darwin.PlistPath, resetHint)
	return nil
}
