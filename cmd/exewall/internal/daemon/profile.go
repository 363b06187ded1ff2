package daemon

import (
	"log/slog"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"sync"
)

// startProfile profiles the daemon's CPU from its start to READY when
// EXEWALL_START_CPU_PROFILE names a file (for pprof); the returned function
// ends the profile (once; later calls do nothing). Without the variable it
// does nothing.
func startProfile(log *slog.Logger) func() {
	endTrace := startTrace(log)
	path := os.Getenv("EXEWALL_START_CPU_PROFILE")
	if path == "" {
		return endTrace
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
		endTrace()
	})
}

// startTrace writes an execution trace of the daemon's start to READY (go
// tool trace: where the start waits, not only where it computes) when
// EXEWALL_START_TRACE names a file.
func startTrace(log *slog.Logger) func() {
	path := os.Getenv("EXEWALL_START_TRACE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		log.Warn("start trace", "err", err)
		return func() {}
	}
	if err := trace.Start(f); err != nil {
		log.Warn("start trace", "err", err)
		f.Close()
		return func() {}
	}
	return sync.OnceFunc(func() {
		trace.Stop()
		f.Close()
	})
}
