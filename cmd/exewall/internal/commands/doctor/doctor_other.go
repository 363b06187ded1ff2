//go:build !linux

package doctor

import (
	"runtime"

	"github.com/exewall/exewall/engine"
)

func run(cgroup, pinDir string) []engine.Check {
	return []engine.Check{{Name: "backend", OK: false, Detail: "no enforcement backend is wired in for " + runtime.GOOS + " yet"}}
}
