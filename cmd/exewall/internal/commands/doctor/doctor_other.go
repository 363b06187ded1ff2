//go:build !linux && !darwin && !windows

package doctor

import (
	"context"
	"runtime"

	"github.com/exewall/exewall/engine"
)

func run(context.Context, string, string) []engine.Check {
	return []engine.Check{{Name: "backend", OK: false, Detail: "exewall has no enforcement backend for " + runtime.GOOS + " (Linux, macOS and Windows only)"}}
}
