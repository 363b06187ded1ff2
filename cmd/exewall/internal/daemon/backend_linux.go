package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/linux"
)

const (
	defaultPolicy   = "/etc/exewall/policy.yaml"
	defaultStateDir = "/var/lib/exewall"
	// defaultPinDir is where the Linux backend pins its links, programs, maps.
	defaultPinDir = linux.DefaultPinDir
)

// newBackend loads the eBPF backend. The resolver is the kernel's view of
// executables (what the datapath matches), used to validate policies.
func newBackend(_ context.Context, cfg Config, log *slog.Logger) (engine.Backend, engine.Resolver, func(), error) {
	b, err := linux.New(linux.Config{Cgroup: cfg.Cgroup, PinDir: cfg.PinDir, DetachOnClose: cfg.DetachOnExit, Logger: log})
	if err != nil {
		return nil, nil, nil, err
	}
	r := linux.NewKernelResolver()
	return b, r, func() { r.Close() }, nil
}

// Reset removes everything the backend pinned under cfg.PinDir; no daemon
// needs to run. It returns what it removed, for the user.
func Reset(_ context.Context, cfg Config) (string, error) {
	pinDir := cfg.PinDir
	if pinDir == "" {
		pinDir = defaultPinDir
	}
	if err := linux.Reset(pinDir); err != nil {
		return "", err
	}
	return fmt.Sprintf("removed exewall's programs, links and maps (%s)", pinDir), nil
}
