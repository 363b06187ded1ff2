package doctor

import (
	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/linux"
)

func run(cgroup, pinDir string) []engine.Check {
	return linux.Doctor(linux.Config{Cgroup: cgroup, PinDir: pinDir})
}
