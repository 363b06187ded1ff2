//go:build !linux && !darwin && !windows

package service

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/engine"
)

func install(*cli.Context, string) error {
	return fmt.Errorf("service install on %s: %w", runtime.GOOS, engine.ErrNotSupported)
}

func uninstall(*cli.Context) error {
	return fmt.Errorf("service uninstall on %s: %w", runtime.GOOS, engine.ErrNotSupported)
}
