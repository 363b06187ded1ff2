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

// loadGCPercent is the GOGC while the backend loads: parsing its object
// files makes tens of MiB of garbage, the same whatever the policy, and at
// 50 (a first collection at 2 MiB of heap) the collector ran a dozen times
// for it: most of the CPU of a start that adopts pinned programs (20-40 ms
// of 40-70). The peak it allows is 1.5-4 MiB higher; what the daemon keeps
// is collected once it is ready (releaseStartMemory).
const loadGCPercent = 400

// tuneGC sets the collector for the backend's load, unless the environment
// sets GOGC; the function it returns sets the daemon's for what follows
// (the policy's compile, whose memory grows with it, included).
func tuneGC() (loaded func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	debug.SetGCPercent(loadGCPercent)
	return func() { debug.SetGCPercent(gcPercent) }
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
