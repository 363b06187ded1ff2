//go:build linux

package linux

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

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
