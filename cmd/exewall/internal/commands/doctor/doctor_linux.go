package doctor

import (
	"context"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/linux"
)

func run(_ context.Context, cgroup, pinDir string) []engine.Check {
	return linux.Doctor(linux.Config{Cgroup: cgroup, PinDir: pinDir})
}
