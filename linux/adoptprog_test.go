//go:build linux

package linux

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/exewall/exewall/engine"
)

// TestRestartAdoptsPinnedPrograms restarts a backend on its pins: the
// second one adopts the programs the first pinned (no second verification)
// and still enforces a policy applied after the restart. Then a map pin is
// replaced behind its back: the pinned programs use the old map, so the
// third start must load them again against the pinned one, or the new
// policy would be written where no program reads it.
func TestRestartAdoptsPinnedPrograms(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	pinDir := scratchPinDir(t)
	exe := clientCopy(t, t.TempDir(), "d")
	port := listenLoopback(t)
	p := &engine.Policy{Rules: []engine.Rule{denyRule("d", exe)}}
	ctx := context.Background()
	start := func(detach bool) *Backend {
		t.Helper()
		b, err := New(ctx, Config{Cgroup: cg, PinDir: pinDir, DetachOnClose: detach})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first := start(false)
	if len(first.adopted) != 0 {
		t.Fatalf("a fresh pin dir adopted %v", first.adopted)
	}
	if err := first.Apply(ctx, &engine.Policy{}); err != nil {
		t.Fatal(err)
	}
	first.Close()

	second := start(false)
	if !slices.Contains(second.adopted, "datapath") {
		t.Fatalf("restart adopted %v, want the datapath's programs", second.adopted)
	}
	if err := second.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("adopted programs let the denied connect through: %+v", out[0])
	}
	second.Close()

	// Replace the pinned exe_rules by a fresh, compatible, empty map.
	spec, err := loadDatapath()
	if err != nil {
		t.Fatal(err)
	}
	ms := spec.Maps["exe_rules"].Copy()
	ms.Pinning = ebpf.PinNone
	m, err := ebpf.NewMap(ms)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(pinDir, "exe_rules"))
	if err := m.Pin(filepath.Join(pinDir, "exe_rules")); err != nil {
		t.Fatal(err)
	}
	m.Close()
	third := start(true)
	defer third.Close()
	if slices.Contains(third.adopted, "datapath") {
		t.Fatal("adopted programs bound to another exe_rules than the pinned one")
	}
	if err := third.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("the denied connect got through after the map pin changed: %+v", out[0])
	}
}

// TestRestartKeepsIdentityHookLinks: a restart that adopts the identity
// hooks' programs keeps their pinned links (the same links, running the
// programs it holds) instead of attaching new ones and detaching the old:
// each detach waits for an RCU grace period before READY.
func TestRestartKeepsIdentityHookLinks(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	pinDir := scratchPinDir(t)
	ctx := context.Background()
	hooks := []string{"exec", "fork", "exit", "loader"}
	linkIDs := func(b *Backend) map[string]link.ID {
		t.Helper()
		ids := map[string]link.ID{}
		for _, h := range hooks {
			l, err := link.LoadPinnedLink(b.identPin(h), nil)
			if err != nil {
				t.Fatalf("hook %s: %v", h, err)
			}
			info, err := l.Info()
			l.Close()
			if err != nil {
				t.Fatal(err)
			}
			ids[h] = info.ID
		}
		return ids
	}
	first, err := New(ctx, Config{Cgroup: cg, PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	if first.execLink == nil {
		t.Skip("no exec hook on this kernel")
	}
	before := linkIDs(first)
	first.Close()

	second, err := New(ctx, Config{Cgroup: cg, PinDir: pinDir, DetachOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if !slices.Contains(second.adopted, "exec") {
		t.Fatalf("restart adopted %v, want the exec hook's programs", second.adopted)
	}
	if after := linkIDs(second); !maps.Equal(before, after) {
		t.Fatalf("identity hook links replaced on an adopting restart: %v, then %v", before, after)
	}
	for _, h := range []struct {
		name string
		prog *ebpf.Program
	}{{"exec", second.exec.ExewallExec}, {"fork", second.exec.ExewallFork}, {"exit", second.exec.ExewallExit}, {"loader", second.exec.ExewallLoaderRead}} {
		l, err := link.LoadPinnedLink(second.identPin(h.name), nil)
		if err != nil {
			t.Fatal(err)
		}
		runs := runsProgram(l, h.prog)
		l.Close()
		if !runs {
			t.Errorf("the %s hook's link does not run the program the restarted backend holds", h.name)
		}
	}
	// And it judges by the identity taken at exec.
	exe := clientCopy(t, t.TempDir(), "d")
	port := listenLoopback(t)
	if err := second.Apply(ctx, &engine.Policy{Rules: []engine.Rule{denyRule("d", exe)}}); err != nil {
		t.Fatal(err)
	}
	if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("the denied connect got through after the restart: %+v", out[0])
	}
}
