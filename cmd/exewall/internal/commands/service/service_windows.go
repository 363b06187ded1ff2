package service

import (
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/cmd/exewall/internal/daemon"
	"github.com/exewall/exewall/windows"
)

func install(cliContext *cli.Context, exe string) error {
	if err := windows.InstallService(exe); err != nil {
		return err
	}
	fmt.Fprintf(cliContext.App.Writer, "installed and started the %s service (%s daemon), listening on %s; its log is %s\n",
		windows.ServiceName, exe, windows.DefaultPipeName, filepath.Join(daemon.DefaultStateDir, "exewall.log"))
	return nil
}

func uninstall(cliContext *cli.Context) error {
	if err := windows.UninstallService(); err != nil {
		return err
	}
	fmt.Fprintf(cliContext.App.Writer, "stopped and removed the %s service; %s\n", windows.ServiceName, resetHint)
	return nil
}
