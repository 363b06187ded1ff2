//go:build linux

package platform

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/linux"
)

// Defaults of the daemon's flags and the CLI's socket.
var (
	DefaultSocket   = client.DefaultSocket
	DefaultPolicy   = "/etc/exewall/policy.yaml"
	DefaultStateDir = "/var/lib/exewall"
	DefaultPinDir   = linux.DefaultPinDir
)

// Words the CLI uses when it cannot reach the daemon.
const (
	StartHint = "start it with `exewall daemon` or `exewall service install`"
	// ExeRuleNote is what the CLI says of an exe: rule where this OS
	// enforces less than the rule says ("" where it enforces all of it).
	ExeRuleNote    = ""
	AllowedCallers = "root"
)

// NewBackend loads the eBPF backend. The backend is also the manager's
// resolver: its identity iterator is the kernel's view of executables (what
// the datapath matches), used to validate policies.
func NewBackend(ctx context.Context, cfg Config) (engine.Backend, error) {
	b, err := linux.New(ctx, linux.Config{Cgroup: cfg.Cgroup, PinDir: cfg.PinDir, DetachOnClose: cfg.DetachOnExit, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Reset removes everything the backend pinned under cfg.PinDir; no daemon
// needs to run. It returns what it removed, for the user.
func Reset(ctx context.Context, cfg Config) (string, error) {
	if cfg.PinDir == "" {
		cfg.PinDir = DefaultPinDir
	}
	// A second reset has nothing to remove, and says so.
	entries, err := os.ReadDir(cfg.PinDir)
	present := err == nil && len(entries) > 0
	if err := linux.Reset(ctx, linux.Config{PinDir: cfg.PinDir}); err != nil {
		return "", err
	}
	if !present {
		return fmt.Sprintf("nothing to remove: exewall has nothing pinned under %s", cfg.PinDir), nil
	}
	return fmt.Sprintf("removed exewall's programs, links and maps (%s)", cfg.PinDir), nil
}

// Checks are `exewall doctor`'s lines.
func Checks(ctx context.Context, cfg Config) []engine.Check {
	return linux.Checks(ctx, linux.Config{Cgroup: cfg.Cgroup, PinDir: cfg.PinDir})
}

// ServeDaemon runs the daemon; Linux has no service wrapper (systemd runs
// the binary directly).
func ServeDaemon(ctx context.Context, run func(ctx context.Context, asService bool) error) error {
	return run(ctx, false)
}

// Listen creates the API's Unix socket, mode 0600, refusing when another
// daemon already listens there.
func Listen(path string) (net.Listener, error) { return listenUnix(path) }
