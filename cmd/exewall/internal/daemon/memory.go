package daemon

import (
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/pprof"
)

// gcPercent is the daemon's GOGC unless the environment sets one: a node
// agent's memory is budgeted, and its heap is mostly the policy in force,
// which changes rarely, so a tighter collector costs little CPU.
const gcPercent = 50

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}

// releaseStartMemory runs once the daemon is ready: what only the start
// needed (the policy file's parse, the garbage of compiling every rule)
// goes back to the system instead of staying in the resident set until the
// runtime's scavenger gets to it. With EXEWALL_HEAP_PROFILE set (the
// benchmark sets it) the heap in use is then written there, for pprof.
func releaseStartMemory(log *slog.Logger) {
	debug.FreeOSMemory()
	path := os.Getenv("EXEWALL_HEAP_PROFILE")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		log.Warn("heap profile", "err", err)
		return
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		log.Warn("heap profile", "err", err)
	}
}
