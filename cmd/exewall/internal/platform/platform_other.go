//go:build !linux && !darwin && !windows

package platform

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/engine"
)

// Defaults of the daemon's flags and the CLI's socket.
var (
	DefaultSocket   = client.DefaultSocket
	DefaultPolicy   = "/etc/exewall/policy.yaml"
	DefaultStateDir = "/var/lib/exewall"
	DefaultPinDir   = ""
)

// Words the CLI uses when it cannot reach the daemon.
const (
	StartHint = "start it with `exewall daemon`"
	// ExeRuleNote is what the CLI says of an exe: rule where this OS
	// enforces less than the rule says ("" where it enforces all of it).
	ExeRuleNote    = ""
	AllowedCallers = "root"
)

// NewBackend: exewall has no enforcement backend for this OS.
func NewBackend(context.Context, Config) (engine.Backend, error) {
	return nil, fmt.Errorf("no enforcement backend for %s: %w", runtime.GOOS, engine.ErrNotSupported)
}

// Reset: nothing to remove on this OS.
func Reset(context.Context, Config) (string, error) {
	return "", fmt.Errorf("reset on %s: %w", runtime.GOOS, engine.ErrNotSupported)
}

// Checks say that this OS has no backend.
func Checks(context.Context, Config) []engine.Check {
	return []engine.Check{{Name: "backend", OK: false, Detail: "exewall has no enforcement backend for " + runtime.GOOS + " (Linux, macOS and Windows only)"}}
}

// ServeDaemon runs the daemon in the foreground.
func ServeDaemon(ctx context.Context, run func(ctx context.Context, asService bool) error) error {
	return run(ctx, false)
}

// InstallService is not supported on this OS.
func InstallService(context.Context, string, io.Writer) error {
	return fmt.Errorf("service install on %s: %w", runtime.GOOS, engine.ErrNotSupported)
}

// UninstallService is not supported on this OS.
func UninstallService(context.Context, io.Writer) error {
	return fmt.Errorf("service uninstall on %s: %w", runtime.GOOS, engine.ErrNotSupported)
}

// Listen creates the API's Unix socket, mode 0600.
func Listen(path string) (net.Listener, error) { return listenUnix(path) }
