package daemon

import (
	"log/slog"
	"os"
	"runtime/pprof"
	"sync"
)

// startProfile profiles the daemon's CPU from its start to READY when
// EXEWALL_START_CPU_PROFILE names a file (for pprof); the returned function
// ends the profile (once; later calls do nothing). Without the variable it
// does nothing.
func startProfile(log *slog.Logger) func() {
	path := os.Getenv("EXEWALL_START_CPU_PROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		log.Warn("start CPU profile", "err", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Warn("start CPU profile", "err", err)
		f.Close()
		return func() {}
	}
	return sync.OnceFunc(func() {
		pprof.StopCPUProfile()
		f.Close()
	})
}
