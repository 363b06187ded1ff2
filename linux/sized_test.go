//go:build linux

package linux

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/exewall/exewall/engine"
)

// pinnedCapacity is the capacity of the hash in force behind the pinned
// sized map name, read from the kernel (not from the backend's handle).
func pinnedCapacity(t *testing.T, pinDir, name string) uint32 {
	t.Helper()
	outer, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, name), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer outer.Close()
	inner, err := innerMap(outer)
	if err != nil || inner == nil {
		t.Fatalf("map %s: no hash in force (%v)", name, err)
	}
	defer inner.Close()
	return inner.MaxEntries()
}

// TestSizedMapsStartSmall: a daemon with no rules does not hold maps sized
// for the largest policy (4 MiB of buckets each), and a small policy does
// not make them grow.
func TestSizedMapsStartSmall(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "small")
	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("small", exe)}})
	for _, name := range sizedNames {
		if c := pinnedCapacity(t, b.pinDir, name); c != sizedFloor {
			t.Errorf("map %s holds %d entries with one rule, want %d", name, c, sizedFloor)
		}
	}
	if n := pinnedChunks(t, b.pinDir); n != 1 {
		t.Errorf("%d counter chunks in place with one rule, want 1", n)
	}
	port := listenLoopback(t)
	if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("small policy not enforced: %+v", out[0])
	}
	st, err := b.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c := st.RuleCounter["small"]; c.Denied != 1 {
		t.Errorf("rule small counted %+v, want 1 denied", c)
	}
}

// pinnedChunks counts the counter chunks in place behind the pinned
// counters map.
func pinnedChunks(t *testing.T, pinDir string) int {
	t.Helper()
	outer, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "counters"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer outer.Close()
	n := 0
	for i := range outer.MaxEntries() {
		m, err := innerMapAt(outer, i)
		if err != nil {
			t.Fatal(err)
		}
		if m != nil {
			n++
			m.Close()
		}
	}
	return n
}

// TestPolicyGrowsPastCapacity grows a policy from one rule to thousands,
// past the maps' first capacity, while the first rule's program keeps
// sending: every attempt is judged by the first rule (its allowed port
// allowed, its other port denied), its counters count every attempt
// exactly, and a restarted daemon adopts the grown maps.
func TestPolicyGrowsPastCapacity(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	pinDir := scratchPinDir(t)
	b, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			b.Close()
		}
	})
	dir := t.TempDir()
	first := clientCopy(t, dir, "first")
	// A UDP socket receives what is sent to p: a closed port would answer
	// with ICMP errors, which the rule's inbound judgement counts too.
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	p, q := uint16(sink.LocalAddr().(*net.UDPAddr).Port), listenLoopback(t)
	allowP, err := parseDestForTest(fmt.Sprintf("127.0.0.1/32 port %d", p))
	if err != nil {
		t.Fatal(err)
	}
	other, err := parseDestForTest("10.0.0.0/8 port 443")
	if err != nil {
		t.Fatal(err)
	}
	files := filepath.Join(dir, "files")
	if err := os.Mkdir(files, 0o755); err != nil {
		t.Fatal(err)
	}
	policy := func(n int) *engine.Policy {
		pol := &engine.Policy{Rules: []engine.Rule{{Name: "first", Selector: engine.Selector{Exe: first}, Action: engine.ActionDeny, Allow: []engine.Dest{allowP}}}}
		for i := 1; i < n; i++ {
			pol.Rules = append(pol.Rules, engine.Rule{Name: fmt.Sprintf("r%d", i), Selector: engine.Selector{Exe: filepath.Join(files, fmt.Sprint(i))},
				Action: engine.ActionDeny, Allow: []engine.Dest{other}})
		}
		return pol
	}
	const most = 6000
	for i := 1; i < most; i++ {
		if err := os.WriteFile(filepath.Join(files, fmt.Sprint(i)), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Apply(context.Background(), policy(1)); err != nil {
		t.Fatal(err)
	}

	// The first rule's traffic, in rounds: UDP to p (allowed) and q (denied).
	var allowed, denied int
	round := func() {
		t.Helper()
		_, out := runClient(t, first, cg, []attempt{
			{Proto: "udp", Op: "sendto", Sock: 4, Addr: "127.0.0.1", Port: p, Repeat: 200},
			{Proto: "udp", Op: "sendto", Sock: 4, Addr: "127.0.0.1", Port: q, Repeat: 200}})
		for errno, n := range out[0].Counts {
			if errno != "ok" {
				t.Errorf("%d sends to the allowed port ended %s", n, errno)
			}
		}
		for errno, n := range out[1].Counts {
			if errno != "EPERM" {
				t.Errorf("%d sends to the denied port ended %s", n, errno)
			}
		}
		allowed += out[0].Counts["ok"]
		denied += out[1].Counts["EPERM"]
	}
	counted := func(b *Backend, when string) {
		t.Helper()
		st, err := b.State(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		c := st.RuleCounter["first"]
		if c.Allowed != uint64(allowed) || c.Denied != uint64(denied) {
			t.Errorf("%s: first rule counted %d allowed, %d denied; its program saw %d allowed, %d denied",
				when, c.Allowed, c.Denied, allowed, denied)
		}
	}
	round()
	counted(b, "one rule")

	done := make(chan error)
	go func() {
		var err error
		for _, n := range []int{50, 600, 2500, most} {
			if err = b.Apply(context.Background(), policy(n)); err != nil {
				break
			}
		}
		done <- err
	}()
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			running = false
		default:
		}
		round()
	}
	round()
	counted(b, fmt.Sprintf("%d rules", most))
	grown := map[string]uint32{}
	for _, name := range []string{"exe_rules", "path_rules", "dests", "counter_names"} {
		grown[name] = pinnedCapacity(t, pinDir, name)
		if grown[name] <= sizedFloor {
			t.Errorf("map %s holds %d entries with %d rules: it did not grow", name, grown[name], most)
		}
	}
	if n := pinnedChunks(t, pinDir); n < most/counterChunk {
		t.Errorf("%d counter chunks in place with %d rules, want at least %d", n, most, most/counterChunk)
	}
	// Shrinking the policy keeps the capacity: no copy on the way down.
	if err := b.Apply(context.Background(), policy(1)); err != nil {
		t.Fatal(err)
	}
	round()
	counted(b, "back to one rule")

	// A restarted daemon adopts the grown maps and the counts.
	b.Close()
	closed = true
	b2, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir, DetachOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b2.Close() })
	for name, c := range grown {
		if got := b2.sized.byName()[name]; (*got).MaxEntries() != c {
			t.Errorf("restarted daemon's %s holds %d entries, the pinned one %d", name, (*got).MaxEntries(), c)
		}
	}
	round()
	counted(b2, "after a restart")
	if err := b2.Apply(context.Background(), policy(most)); err != nil {
		t.Fatal(err)
	}
	round()
	counted(b2, "after a restart and an apply")
	t.Logf("first rule: %d allowed, %d denied across growth; capacities %v", allowed, denied, grown)
}

// TestFreshApplyMakesRoomFirst: a large policy's first apply sizes every
// policy-sized map and puts every counter chunk in place before writing
// (makeRoom: all at once, so the kernel's grace periods overlap) instead
// of growing maps one by one when a write finds them full; the policy is in
// force when Apply returns, the last rule (in the last chunk) included, and
// its counter starts from zero. A second apply of the same size grows
// nothing.
func TestFreshApplyMakesRoomFirst(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	dir := t.TempDir()
	const n = 3000
	last := clientCopy(t, dir, "last")
	other, err := parseDestForTest("10.0.0.0/8 port 443")
	if err != nil {
		t.Fatal(err)
	}
	policy := func(variant int) *engine.Policy {
		p := &engine.Policy{}
		for i := range n - 1 {
			exe := filepath.Join(dir, fmt.Sprint(i))
			r := engine.Rule{Name: fmt.Sprintf("r%d", i), Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny}
			if (i+variant)%2 == 0 {
				r.Allow = []engine.Dest{other}
			}
			p.Rules = append(p.Rules, r)
		}
		p.Rules = append(p.Rules, engine.Rule{Name: "last", Selector: engine.Selector{Exe: last}, Action: engine.ActionDeny})
		return p
	}
	for i := range n - 1 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	full := func() map[string]int {
		out := map[string]int{}
		for name, m := range b.sized.byName() {
			out[name] = (*m).full
		}
		return out
	}
	b.apply(t, policy(0))
	for name, f := range full() {
		if f != 0 {
			t.Errorf("map %s grew %d times when a write found it full: makeRoom did not size it", name, f)
		}
	}
	for name, want := range map[string]uint32{"exe_rules": sizedCapacity(n), "path_rules": sizedCapacity(n), "counter_names": sizedCapacity(n),
		"dests": sizedCapacity(n / 2)} {
		if c := pinnedCapacity(t, b.pinDir, name); c != want {
			t.Errorf("map %s holds %d entries after a fresh apply of %d rules, want %d", name, c, n, want)
		}
	}
	if got, want := pinnedChunks(t, b.pinDir), n/counterChunk+1; got != want {
		t.Errorf("%d counter chunks in place, want %d", got, want)
	}
	port := listenLoopback(t)
	if _, out := runClient(t, last, cg, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("last rule not in force after the fresh apply: %+v", out[0])
	}
	st, err := b.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c := st.RuleCounter["last"]; c.Denied != 1 || c.Allowed != 0 {
		t.Errorf("rule last counted %+v, want 1 denied", c)
	}
	// Both generations full: room was made for both at the first apply.
	b.apply(t, policy(1))
	for name, f := range full() {
		if f != 0 {
			t.Errorf("map %s grew %d times at the second apply", name, f)
		}
	}
	if _, out := runClient(t, last, cg, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("last rule not in force after the second apply: %+v", out[0])
	}
}
