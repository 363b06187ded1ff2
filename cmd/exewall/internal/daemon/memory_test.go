package daemon

import (
	"math"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"testing"
)

// gcPercentNow reads the collector's setting without changing it.
func gcPercentNow() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestTuneGC: the backend loads with loadGCPercent under loadMemoryLimit,
// the rest runs with gcPercent and the limit as it was; a GOGC from the
// environment is left alone throughout, and a GOMEMLIMIT too.
func TestTuneGC(t *testing.T) {
	saved, savedLimit := gcPercentNow(), debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(saved); debug.SetMemoryLimit(savedLimit) })
	debug.SetMemoryLimit(math.MaxInt64)

	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	loaded := tuneGC(11 << 20)
	if got := gcPercentNow(); got != loadGCPercent {
		t.Fatalf("while the backend loads GOGC is %d, want %d", got, loadGCPercent)
	}
	if got, want := debug.SetMemoryLimit(-1), loadMemoryLimit(11<<20); got != want || want != 86<<20 {
		t.Fatalf("while the backend loads the memory limit is %d, want %d (86 MiB)", got, want)
	}
	loaded()
	if got := gcPercentNow(); got != gcPercent {
		t.Fatalf("once it is loaded GOGC is %d, want %d", got, gcPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("once it is loaded the memory limit is %d, want none", got)
	}

	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetMemoryLimit(1 << 30)
	loaded = tuneGC(0)
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Fatalf("GOMEMLIMIT from the environment became %d while the backend loads", got)
	}
	loaded()

	t.Setenv("GOGC", "77")
	debug.SetGCPercent(77)
	loaded = tuneGC(0)
	loaded()
	if got := gcPercentNow(); got != 77 {
		t.Fatalf("GOGC from the environment became %d", got)
	}
}

// TestWorthTrim: a surplus (objects and free pages beyond the live heap)
// is worth a trim when what grew since the last trim's is from 2 MiB and a
// 32nd of the live heap on, not below.
func TestWorthTrim(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		surplus, live, floor uint64
		want                 bool
	}{
		{surplus: 0, live: 10 * mib, want: false},
		{surplus: 2*mib - 1, live: 10 * mib, want: false}, // under 2 MiB
		{surplus: 2 * mib, live: 10 * mib, want: true},
		{surplus: 4 * mib, live: 160 * mib, want: false},
		{surplus: 5 * mib, live: 160 * mib, want: true}, // a 32nd of 160 MiB
		// What the last trim could not give back is not worth another.
		{surplus: 2300 << 10, live: 352 << 10, floor: 2300 << 10, want: false},
		{surplus: 4*mib + 2300<<10, live: 352 << 10, floor: 2300 << 10, want: true},
		{surplus: 1 * mib, live: 10 * mib, floor: 3 * mib, want: false}, // below the floor: no underflow
	} {
		if got := worthTrim(c.surplus, c.live, c.floor); got != c.want {
			t.Errorf("worthTrim(surplus %d, live %d, floor %d) = %v, want %v", c.surplus, c.live, c.floor, got, c.want)
		}
	}
}

// TestTrimIfWorth: 64 MiB of garbage is given back to the system (the
// runtime's released heap grows by it); then, with nothing left to give,
// no collection is forced. The free pages a trim cannot give back (2.3 MiB
// after many runs of the package's tests, CI's failure) do not count; an
// allocation of a few MiB by another goroutine between two trims might, so
// "nothing left" is asked for within five trims, not at the first: what
// matters is that an idle daemon's trims stop.
func TestTrimIfWorth(t *testing.T) {
	released := func() uint64 {
		s := []rtmetrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
		rtmetrics.Read(s)
		return s[0].Value.Uint64()
	}
	debug.FreeOSMemory()
	garbage := make([][]byte, 64)
	for i := range garbage {
		garbage[i] = make([]byte, 1<<20)
		garbage[i][0] = 1
	}
	runtime.KeepAlive(garbage)
	garbage = nil
	before := released() // the garbage's pages are in use, not released
	if !trimIfWorth() {
		t.Fatal("64 MiB of garbage was not worth a trim")
	}
	if got := released() - min(before, released()); got < 48<<20 {
		t.Fatalf("%d MiB released, want most of the 64 MiB of garbage", got>>20)
	}
	for i := 0; trimIfWorth(); i++ {
		if i == 4 {
			t.Fatal("five trims in a row, each finding a surplus worth a sixth: an idle daemon would collect every trimEvery")
		}
	}
}
