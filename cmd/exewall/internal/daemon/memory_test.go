package daemon

import (
	"runtime/debug"
	"testing"
)

// gcPercentNow reads the collector's setting without changing it.
func gcPercentNow() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestTuneGC: the backend loads with loadGCPercent, the rest runs with
// gcPercent; a GOGC from the environment is left alone throughout.
func TestTuneGC(t *testing.T) {
	saved := gcPercentNow()
	t.Cleanup(func() { debug.SetGCPercent(saved) })

	t.Setenv("GOGC", "")
	loaded := tuneGC()
	if got := gcPercentNow(); got != loadGCPercent {
		t.Fatalf("while the backend loads GOGC is %d, want %d", got, loadGCPercent)
	}
	loaded()
	if got := gcPercentNow(); got != gcPercent {
		t.Fatalf("once it is loaded GOGC is %d, want %d", got, gcPercent)
	}

	t.Setenv("GOGC", "77")
	debug.SetGCPercent(77)
	loaded = tuneGC()
	loaded()
	if got := gcPercentNow(); got != 77 {
		t.Fatalf("GOGC from the environment became %d", got)
	}
}
