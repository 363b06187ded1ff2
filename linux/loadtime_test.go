//go:build linux

package linux

import (
	"github.com/exewall/exewall/engine"
	"log/slog"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/rlimit"
)

// The load-time tests measure where linux.New's time goes (docs/BENCHMARKS.md,
// "Start"): EXEWALL_LOADTIME=1 go test -count=1 -v -run TestLoadTime ./linux/
// They assert nothing and do nothing without that variable.

func TestLoadTimeBreakdown(t *testing.T) {
	if os.Getenv("EXEWALL_LOADTIME") == "" {
		return // a measurement, not a check: EXEWALL_LOADTIME=1 runs it
	}
	rlimit.RemoveMemlock()
	t0 := time.Now()
	cache0 := btf.NewCache()
	cache0.Kernel()
	t.Logf("btf cache.Kernel() first: %v", time.Since(t0))
	t0 = time.Now()
	ks, err := btf.LoadSpec("/sys/kernel/btf/vmlinux")
	if err != nil {
		t.Fatal(err)
	}
	_ = ks
	t.Logf("btf.LoadSpec(vmlinux) fresh: %v", time.Since(t0))
	cache := btf.NewCache()
	t0 = time.Now()
	cache.Kernel()
	t.Logf("btf cache.Kernel(): %v", time.Since(t0))
	pool := map[string]*ebpf.Map{}
	objs := []struct {
		name string
		load func() (*ebpf.CollectionSpec, error)
	}{{"datapath", loadDatapath}, {"execwatch", loadExecwatch}, {"guard", loadGuard}, {"dns", loadDns}, {"inbound", loadInbound}, {"sockets", loadSockets}}
	var total time.Duration
	for _, o := range objs {
		t0 := time.Now()
		spec, err := o.load()
		if err != nil {
			t.Fatal(err)
		}
		tspec := time.Since(t0)
		// maps
		t0 = time.Now()
		var nm int
		for name, ms := range spec.Maps {
			if pool[name] != nil || name[0] == '.' {
				continue
			}
			t1 := time.Now()
			m, err := ebpf.NewMap(ms)
			if err != nil {
				t.Logf("  map %s: %v", name, err)
				continue
			}
			d := time.Since(t1)
			if d > 2*time.Millisecond {
				t.Logf("  map %s %s max %d flags %#x key %d val %d: %v", name, ms.Type, ms.MaxEntries, ms.Flags, ms.KeySize, ms.ValueSize, d)
			}
			pool[name] = m
			nm++
		}
		tmaps := time.Since(t0)
		names := make([]string, 0, len(spec.Programs))
		for n := range spec.Programs {
			names = append(names, n)
		}
		sort.Strings(names)
		var tprogs time.Duration
		for _, pn := range names {
			one := spec.Copy()
			for n := range one.Programs {
				if n != pn {
					delete(one.Programs, n)
				}
			}
			repl := map[string]*ebpf.Map{}
			for n := range one.Maps {
				if pool[n] != nil && n[0] != '.' {
					repl[n] = pool[n]
				}
			}
			t0 := time.Now()
			coll, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{MapReplacements: repl, Cache: cache})
			d := time.Since(t0)
			tprogs += d
			if err != nil {
				t.Logf("  prog %s: %v (%v)", pn, err, d)
				continue
			}
			p := coll.Programs[pn]
			info, _ := p.Info()
			vi, _ := info.VerifiedInstructions()
			ins, _ := info.Instructions()
			t.Logf("  prog %-28s %-14s %v  insns(spec)=%d xlated=%d verified=%d", pn, p.Type(), d.Round(time.Millisecond/10), len(spec.Programs[pn].Instructions), len(ins), vi)
			coll.Close()
		}
		t.Logf("%s: spec %v, %d maps %v, %d programs %v", o.name, tspec, nm, tmaps, len(names), tprogs)
		total += tspec + tmaps + tprogs
	}
	t.Logf("total (excluding btf) %v", total)
	for _, m := range pool {
		m.Close()
	}
}

func TestLoadTimeNew(t *testing.T) {
	if os.Getenv("EXEWALL_LOADTIME") == "" {
		return // a measurement, not a check: EXEWALL_LOADTIME=1 runs it
	}
	cg := scratchCgroup(t)
	pins := scratchPinDir(t)
	for i := range 3 {
		t0 := time.Now()
		b, err := New(t.Context(), Config{Cgroup: cg, PinDir: pins, DetachOnClose: i == 2, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("New #%d: %v", i, time.Since(t0))
		t1 := time.Now()
		if err := b.Apply(t.Context(), &engine.Policy{}); err != nil {
			t.Fatal(err)
		}
		t2 := time.Now()
		b.State(t.Context())
		t.Logf("Apply(empty) #%d: %v, State %v", i, t2.Sub(t1), time.Since(t2))
		b.Close()
	}
}

func TestLoadTimeResolver(t *testing.T) {
	if os.Getenv("EXEWALL_LOADTIME") == "" {
		return // a measurement, not a check: EXEWALL_LOADTIME=1 runs it
	}
	for range 3 {
		t0 := time.Now()
		r := newResolver(nil, nil)
		t.Logf("newResolver: %v (%v)", time.Since(t0), r.fallback)
		r.Close()
	}
}
