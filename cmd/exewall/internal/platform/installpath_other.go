//go:build !unix && !windows

package platform

import (
	"fmt"
	"runtime"

	"github.com/exewall/exewall/engine"
)

func checkInstallPath(string) error {
	return fmt.Errorf("check service executable on %s: %w", runtime.GOOS, engine.ErrNotSupported)
}
