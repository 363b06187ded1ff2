//go:build windows

package platform

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/windows"
	xwindows "golang.org/x/sys/windows"
)

// Defaults of the daemon's flags and the CLI's named pipe.
var (
	DefaultSocket   = client.DefaultSocket
	DefaultPolicy   = filepath.Join(programFiles(), "exewall", "policy.yaml")
	DefaultStateDir = filepath.Join(programFiles(), "exewall", "state")
	DefaultPinDir   = "" // nothing is pinned on Windows
)

// Words the CLI uses when it cannot reach the daemon.
const (
	StartHint = "start the service with `exewall service install` or `sc start exewall`, or run `exewall daemon` from an elevated prompt"
	// ExeRuleNote is what the CLI says of an exe: rule where this OS
	// enforces less than the rule says ("" where it enforces all of it).
	ExeRuleNote    = ""
	AllowedCallers = "SYSTEM or an elevated administrator"
)

func programFiles() string {
	if p, err := xwindows.KnownFolderPath(xwindows.FOLDERID_ProgramFiles, 0); err == nil && p != "" {
		return p
	}
	if p := os.Getenv("ProgramFiles"); p != "" {
		return p
	}
	return `C:\Program Files`
}

// NewBackend opens the WFP backend. WFP matches the app ID of a path, so
// the resolver is the file system's view.
func NewBackend(ctx context.Context, cfg Config) (engine.Backend, error) {
	b, err := windows.New(ctx, windows.Config{DetachOnClose: cfg.DetachOnExit, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Reset removes exewall's WFP filters, sublayer and provider.
func Reset(ctx context.Context, cfg Config) (string, error) {
	if err := windows.Reset(ctx, windows.Config{Logger: slog.New(slog.DiscardHandler)}); err != nil {
		return "", err
	}
	return "removed exewall's WFP filters, sublayer and provider", nil
}

// Checks are `exewall doctor`'s lines.
func Checks(ctx context.Context, cfg Config) []engine.Check {
	return windows.Checks(ctx, windows.Config{})
}

// ServeDaemon runs the daemon under the service control manager when
// started as a service, and in the foreground otherwise.
func ServeDaemon(ctx context.Context, run func(ctx context.Context, asService bool) error) error {
	svc, err := isService()
	if err != nil {
		return err
	}
	if !svc {
		return run(ctx, false)
	}
	return runService(serviceName, func(ctx context.Context) error { return run(ctx, true) })
}

// InstallService registers and starts the exewall service running exe.
func InstallService(ctx context.Context, exe string, out io.Writer) error {
	if err := installService(exe); err != nil {
		return err
	}
	fmt.Fprintf(out, "installed and started the %s service (%s daemon), listening on %s; its log is %s\n",
		serviceName, exe, DefaultSocket, filepath.Join(DefaultStateDir, "exewall.log"))
	return nil
}

// UninstallService stops and removes the exewall service.
func UninstallService(ctx context.Context, out io.Writer) error {
	if err := uninstallService(); err != nil {
		return err
	}
	fmt.Fprintf(out, "stopped and removed the %s service; %s\n", serviceName, ResetHint)
	return nil
}

// Listen creates the API's named pipe (SYSTEM and Administrators only).
func Listen(path string) (net.Listener, error) { return listenPipe(path) }
