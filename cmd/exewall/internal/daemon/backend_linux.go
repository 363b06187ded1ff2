package daemon

import (
	"log/slog"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/linux"
)

// defaultPinDir is where the Linux backend pins its links, programs, maps.
const defaultPinDir = linux.DefaultPinDir

// newBackend loads the eBPF backend. The resolver is the kernel's view of
// executables (what the datapath matches), used to validate policies.
func newBackend(cfg Config, log *slog.Logger) (engine.Backend, engine.Resolver, func(), error) {
	b, err := linux.New(linux.Config{Cgroup: cfg.Cgroup, PinDir: cfg.PinDir, DetachOnClose: cfg.DetachOnExit, Logger: log})
	if err != nil {
		return nil, nil, nil, err
	}
	r := linux.NewKernelResolver()
	return b, r, func() { r.Close() }, nil
}

// Reset removes everything the backend pinned under pinDir; no daemon
// needs to run.
func Reset(pinDir string) error {
	if pinDir == "" {
		pinDir = defaultPinDir
	}
	return linux.Reset(pinDir)
}
