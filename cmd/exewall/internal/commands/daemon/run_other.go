//go:build !windows

package daemon

import (
	"context"

	"github.com/exewall/exewall/cmd/exewall/internal/daemon"
)

// run runs the daemon in the foreground; systemd and launchd start it so.
func run(ctx context.Context, cfg daemon.Config) error { return daemon.Run(ctx, cfg) }
