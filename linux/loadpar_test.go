//go:build linux

package linux

import (
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/exewall/exewall/engine"
)

// TestLoadConcurrentlyThen: then gets every map of the object while the
// programs load, and a then that fails fails the load with nothing left
// assigned.
func TestLoadConcurrentlyThen(t *testing.T) {
	requireKernel(t)
	spec, err := loadSockets()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var objs socketsObjects
	if err := loadConcurrently(spec, &objs, &ebpf.CollectionOptions{}, func(m map[string]*ebpf.Map) error {
		got = slices.Sorted(maps.Keys(m))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	objs.Close()
	want := slices.Sorted(maps.Keys(spec.Maps))
	if !slices.Equal(got, want) {
		t.Fatalf("then got maps %v, want %v", got, want)
	}

	boom := errors.New("boom")
	objs = socketsObjects{}
	err = loadConcurrently(spec, &objs, &ebpf.CollectionOptions{}, func(map[string]*ebpf.Map) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("load with a failing then: %v, want %v", err, boom)
	}
	if len(objectPrograms(&objs)) != 0 || len(objectMaps(&objs)) != 0 {
		t.Fatal("a failed load left objects assigned")
	}
}

// TestFreshLoadFillsPolicyMaps: a fresh start puts the hash of every map
// sized to the policy and the counters' first chunk in their outer maps
// (done while the programs are verified), and an adopting start finds the
// same ones.
func TestFreshLoadFillsPolicyMaps(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	pinDir := scratchPinDir(t)
	inner := func(b *Backend) map[string]ebpf.MapID {
		t.Helper()
		out := map[string]ebpf.MapID{}
		for name, f := range b.sized.byName() {
			s := *f
			if s == nil || s.inner == nil {
				t.Fatalf("sized map %s not opened", name)
			}
			var id uint32
			if err := s.outer.Lookup(uint32(0), &id); err != nil {
				t.Fatalf("%s slot 0: %v", name, err)
			}
			out[name] = ebpf.MapID(id)
		}
		var id uint32
		if err := b.objs.Counters.Lookup(uint32(0), &id); err != nil || b.counters.chunks[0] == nil {
			t.Fatalf("counters chunk 0 not in place: %v", err)
		}
		out["counters"] = ebpf.MapID(id)
		return out
	}
	first, err := New(t.Context(), Config{Cgroup: cg, PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	fresh := inner(first)
	first.Close()
	second, err := New(t.Context(), Config{Cgroup: cg, PinDir: pinDir, DetachOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if !slices.Contains(second.adopted, "datapath") {
		t.Fatalf("restart adopted %v", second.adopted)
	}
	if again := inner(second); !maps.Equal(fresh, again) {
		t.Fatalf("adopting start found inner maps %v, the fresh one put %v", again, fresh)
	}
}

// TestOptionalLoadsBesideDatapath: on a kernel that gives cgroup programs
// task storage, a fresh start loads the optional objects while the
// datapath's programs are verified, and all of them are in force. What
// New does when the datapath fails after that start (dropOptional, then
// loadOptional again against the next datapath) leaves them in force too.
func TestOptionalLoadsBesideDatapath(t *testing.T) {
	requireKernel(t)
	if !kernelAtLeast(6, 16) {
		t.Skip("before 6.16 the optional objects load after the datapath")
	}
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	if b.early != nil {
		t.Fatal("New left the early load behind")
	}
	want := []string{"setsockopt", "egress", "dns_egress", "sock_destroy"}
	if err := b.Apply(t.Context(), &engine.Policy{}); err != nil {
		t.Fatal(err)
	}
	hooks := b.activeHooks()
	for _, h := range want {
		if !slices.Contains(hooks, h) {
			t.Fatalf("hooks in force %v lack %s (optional: %v)", hooks, h, b.optional)
		}
	}
	for name, err := range b.optional {
		if err != nil {
			t.Fatalf("optional %s: %v", name, err)
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	b.closeGuard(false)
	b.closeDNS(false)
	b.closeInbound(false)
	b.execLink.Close()
	for _, l := range b.identLinks {
		l.Close()
	}
	b.exec.Close()
	b.dropOptional(&optionalLoad{})
	if b.guard.ExewallEgress != nil || b.dnsObjs.ExewallDnsEgress != nil || b.sockIter != nil || b.guardOK || b.dnsOK || b.inboundOK {
		t.Fatal("dropOptional left objects behind")
	}
	b.loadOptional(nil)
	if err := b.attach(); err != nil {
		t.Fatal(err)
	}
	hooks = b.activeHooks()
	for _, h := range want {
		if !slices.Contains(hooks, h) {
			t.Fatalf("after loading again, hooks in force %v lack %s (optional: %v)", hooks, h, b.optional)
		}
	}
}
