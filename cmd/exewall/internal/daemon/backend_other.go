//go:build !linux && !darwin && !windows

package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"

	"github.com/exewall/exewall/engine"
)

const (
	defaultPolicy   = "/etc/exewall/policy.yaml"
	defaultStateDir = "/var/lib/exewall"
	defaultPinDir   = ""
)

// newBackend: exewall enforces with eBPF on Linux, pf on macOS and WFP on
// Windows, and with nothing here.
func newBackend(context.Context, Config, *slog.Logger) (engine.Backend, engine.Resolver, func(), error) {
	return nil, nil, nil, fmt.Errorf("no enforcement backend for %s: %w", runtime.GOOS, engine.ErrNotSupported)
}

// Reset is not available without a backend.
func Reset(context.Context, Config) (string, error) {
	return "", fmt.Errorf("reset on %s: %w", runtime.GOOS, engine.ErrNotSupported)
}
