package daemon

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"runtime/pprof"
	"time"

	"github.com/exewall/exewall/engine"
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

// loadMemoryLimit bounds what loadGCPercent lets the heap grow to while the
// backend loads, beside the policy file's parse (engine.ParseAhead), for a
// policy file of policyBytes: at 100,000 rules the parse's garbage grew the
// heap to 167 MB before a first collection, and what the runtime keeps of
// such a peak (span records, fragmented spans) was ~2.5 MiB of the ready
// daemon's RssAnon (56-58 MiB instead of 58-61). The parsed policy is about
// twice its file: the limit stays above what is live, so the collector
// does not run back to back for a large one.
func loadMemoryLimit(policyBytes int64) int64 { return 64<<20 + 2*policyBytes }

// tuneGC sets the collector for the backend's load of a daemon whose
// policy file is policyBytes long, unless the environment sets GOGC (and
// then GOMEMLIMIT is left alone too); the function it returns sets the
// daemon's for what follows (the policy's compile, whose memory grows with
// it, included).
func tuneGC(policyBytes int64) (loaded func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	debug.SetGCPercent(loadGCPercent)
	limit := int64(-1)
	if os.Getenv("GOMEMLIMIT") == "" {
		limit = debug.SetMemoryLimit(loadMemoryLimit(policyBytes))
	}
	return func() {
		debug.SetGCPercent(gcPercent)
		if limit >= 0 {
			debug.SetMemoryLimit(limit)
		}
	}
}

// heapSamplingOnlyWhenAsked turns the runtime's sampling of allocations
// off unless EXEWALL_HEAP_PROFILE asks for a profile: the sampled stacks'
// records were 1.5 MiB of a 100,000-rule daemon's RssAnon, kept for a
// profile nobody reads. Called first thing (the runtime asks for it as
// early as possible).
func heapSamplingOnlyWhenAsked() {
	if os.Getenv("EXEWALL_HEAP_PROFILE") == "" {
		runtime.MemProfileRate = 0
	}
}

// releaseStartMemory runs once the daemon is ready: what only the start
// needed (the policy file's parse, the garbage of compiling every rule)
// goes back to the system instead of staying in the resident set until the
// runtime's scavenger gets to it. With EXEWALL_HEAP_PROFILE set (the
// benchmark sets it) the heap in use is then written there, for pprof.
func releaseStartMemory(log *slog.Logger, m *engine.Manager) {
	// What the start left running first (the runnable cache's save): its
	// garbage was up to 10 MB at 100,000 rules, in the resident set until
	// the next trim.
	m.Settle()
	debug.FreeOSMemory()
	path := os.Getenv("EXEWALL_HEAP_PROFILE")
	if path == "" {
		return
	}
	// Written aside and renamed: whoever waits for the file reads it whole.
	f, err := os.Create(path + ".tmp")
	if err != nil {
		log.Warn("heap profile", "err", err)
		return
	}
	err = pprof.WriteHeapProfile(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(path+".tmp", path)
	}
	if err != nil {
		os.Remove(path + ".tmp")
		log.Warn("heap profile", "err", err)
	}
}

// trimEvery is how often trimHeap looks: a change's garbage goes back to
// the system within that once things are quiet, and an idle daemon pays a
// metrics read (microseconds) each time.
const trimEvery = 5 * time.Second

// trimHeap gives back to the system what the heap holds beyond its live
// objects after a large change: at 100,000 rules one CLI change makes ~90
// MB of garbage, which the collector frees but the runtime keeps mapped up
// to its heap goal (1.5x the live heap with GOGC 50, and 10% over that
// before the scavenger acts), so RssAnon stayed at 295 MiB for a live
// heap of 160 MB. A collection that returns memory runs only when the
// surplus is worth it: at most once per trimEvery, none while idle.
func trimHeap(ctx context.Context) {
	t := time.NewTicker(trimEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			trimIfWorth()
		}
	}
}

// heapSamples are what trimIfWorth reads: the heap's objects (live or
// garbage not yet collected), its free pages still backed by memory, and
// the live heap the last collection found.
var heapSamples = []string{"/memory/classes/heap/objects:bytes", "/memory/classes/heap/free:bytes", "/gc/heap/live:bytes"}

// trimFloor is the surplus the last trim left: free pages that
// debug.FreeOSMemory does not give back (2.3 MiB of them after many runs of
// this package's tests), and what was allocated meanwhile. Only trimHeap's
// goroutine reads and sets it.
var trimFloor uint64

// trimIfWorth returns the heap's surplus to the system when what grew
// since the last trim is more than a 32nd of the live heap and 2 MiB; it
// says whether it did. (At a quarter, 30-90 MiB of a 100,000-rule daemon's
// stayed; at an eighth and 8 MiB, the periodic sync's garbage, 5 MB every
// 30 s at 100,000 rules before its buffers shrank, stayed until the next
// collection: an idle daemon's RssAnon went up and down by 8 MiB.) A trim
// is one collection: tens of ms of CPU at 100,000 rules, at most once per
// trimEvery, and none while idle: without the floor, a small heap whose
// unreleased free pages were just over 2 MiB was collected every trimEvery
// for nothing (CI's TestTrimIfWorth).
func trimIfWorth() bool {
	if surplus, live := heapSurplus(); !worthTrim(surplus, live, trimFloor) {
		return false
	}
	debug.FreeOSMemory()
	trimFloor, _ = heapSurplus()
	return true
}

// heapSurplus is what the heap holds beyond its live objects: garbage not
// yet collected and free pages still backed by memory.
func heapSurplus() (surplus, live uint64) {
	s := make([]rtmetrics.Sample, len(heapSamples))
	for i, name := range heapSamples {
		s[i].Name = name
	}
	rtmetrics.Read(s)
	objects, free, live := s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
	return objects + free - min(live, objects+free), live
}

// worthTrim is trimIfWorth's rule, for a heap with surplus bytes beyond its
// live bytes, of which floor were left by the last trim.
func worthTrim(surplus, live, floor uint64) bool {
	grown := surplus - min(floor, surplus)
	return grown >= 2<<20 && grown >= live/32
}
