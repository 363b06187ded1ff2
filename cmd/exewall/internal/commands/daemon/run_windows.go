package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/exewall/exewall/cmd/exewall/internal/daemon"
	"github.com/exewall/exewall/windows"
)

// run runs the daemon in the foreground, or, when the service control
// manager started this process (`exewall service install` registers it with
// the argument "daemon"), as the exewall service until the SCM stops it. A
// service has no console, so its log goes to exewall.log in the state
// directory unless --log names a file.
func run(ctx context.Context, cfg daemon.Config) error {
	isService, err := windows.IsService()
	if err != nil {
		return err
	}
	if !isService {
		return daemon.Run(ctx, cfg)
	}
	if cfg.LogFile == "" {
		dir := cfg.StateDir
		if dir == "" {
			dir = daemon.DefaultStateDir
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create state dir: %w", err)
		}
		cfg.LogFile = filepath.Join(dir, "exewall.log")
	}
	return windows.RunService(windows.ServiceName, func(ctx context.Context) error {
		return daemon.Run(ctx, cfg)
	})
}
