//go:build !linux

package daemon

import (
	"fmt"
	"log/slog"
	"runtime"

	"github.com/exewall/exewall/engine"
)

const defaultPinDir = ""

// newBackend: the pf and WFP backends are not wired in yet.
func newBackend(cfg Config, log *slog.Logger) (engine.Backend, engine.Resolver, func(), error) {
	return nil, nil, nil, fmt.Errorf("no enforcement backend for %s yet: %w", runtime.GOOS, engine.ErrNotSupported)
}

// Reset is not available without a backend.
func Reset(pinDir string) error {
	return fmt.Errorf("reset on %s: %w", runtime.GOOS, engine.ErrNotSupported)
}
