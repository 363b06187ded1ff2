//go:build darwin

package platform

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/darwin"
	"github.com/exewall/exewall/engine"
)

// Defaults of the daemon's flags and the CLI's socket.
var (
	DefaultSocket   = client.DefaultSocket
	DefaultPolicy   = "/etc/exewall/policy.yaml"
	DefaultStateDir = darwinStateDir // also holds pf's enable token
	DefaultPinDir   = ""             // nothing is pinned on macOS
)

// Words the CLI uses when it cannot reach the daemon.
const (
	StartHint = "start it with `exewall daemon` or `exewall service install`"
	// ExeRuleNote is what the CLI says of an exe: rule where this OS
	// enforces less than the rule says ("" where it enforces all of it).
	ExeRuleNote    = "inbound only: the Application Firewall blocks its incoming connections; what it opens is not blocked"
	AllowedCallers = "root"
)

// NewBackend starts the pf backend. pf cannot match executables, so the
// resolver identifies none: exe rules are refused before apply.
func NewBackend(ctx context.Context, cfg Config) (engine.Backend, error) {
	b, err := darwin.New(ctx, darwin.Config{StateDir: cfg.StateDir, DetachOnClose: cfg.DetachOnExit, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return struct {
		*darwin.Backend
		noExeResolver
	}{b, noExeResolver{}}, nil
}

// noExeResolver identifies no executable.
type noExeResolver struct{}

func (noExeResolver) Identify(string) (engine.FileID, bool, error) {
	return engine.FileID{}, false, nil
}

// Reset removes exewall's pf anchor and releases its pf reference.
func Reset(ctx context.Context, cfg Config) (string, error) {
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if err := darwin.Reset(ctx, darwin.Config{StateDir: cfg.StateDir}); err != nil {
		return "", err
	}
	return "removed exewall's pf anchor " + darwin.AnchorPath + " and released its pf reference", nil
}

// Checks are `exewall doctor`'s lines.
func Checks(ctx context.Context, cfg Config) []engine.Check {
	return darwin.Checks(ctx, darwin.Config{StateDir: cfg.StateDir})
}

// ServeDaemon runs the daemon; launchd runs the binary directly.
func ServeDaemon(ctx context.Context, run func(ctx context.Context, asService bool) error) error {
	return run(ctx, false)
}

// hostLaunchd manages the host's LaunchDaemon.
func hostLaunchd() *launchd { return &launchd{launchctl: "launchctl", safe: checkInstallPath} }

// InstallService writes and bootstraps the LaunchDaemon running exe.
func InstallService(ctx context.Context, exe string, out io.Writer) error {
	if err := hostLaunchd().install(ctx, exe); err != nil {
		return err
	}
	fmt.Fprintf(out, "installed and started the LaunchDaemon %s (%s), listening on %s; its log is %s\n",
		launchdLabel, launchdPlist, darwinSocket, launchdLog)
	return nil
}

// UninstallService boots out and removes the LaunchDaemon.
func UninstallService(ctx context.Context, out io.Writer) error {
	if err := hostLaunchd().uninstall(ctx); err != nil {
		return err
	}
	fmt.Fprintf(out, "stopped the LaunchDaemon %s and removed %s; %s\n", launchdLabel, launchdPlist, ResetHint)
	return nil
}

// Listen creates the API's Unix socket, mode 0600.
func Listen(path string) (net.Listener, error) { return listenUnix(path) }

// Dial connects to the daemon's socket.
func Dial(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}
