//go:build linux

package linux

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/exewall/exewall/engine"
)

// TestChunksAheadMatchesSlotFor: the counter chunks makeRoomAhead puts in
// place before compile are exactly those the slots compile then hands out
// land in, whatever slots are live, stale or wrapped around (no kernel: the
// walk is slotFor's).
func TestChunksAheadMatchesSlotFor(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		nchunks := 1 + rng.IntN(6)
		b := &Backend{
			counters: &counterChunks{chunks: make([]*ebpf.Map, 40), unused: make([]*chunkBits, 40)}}
		b.slots = newSlotIndex(&b.slotName)
		for i := range nchunks {
			if i == 0 || rng.IntN(3) > 0 {
				b.counters.chunks[i] = &ebpf.Map{} // in place (never read here)
			}
		}
		limit := int(b.counters.limit())
		// Slots handed before (in chunks in place): live ones (in b.slots)
		// and stale ones.
		for s := 1; s < limit; s++ {
			if b.counters.chunks[s>>counterChunkBits] == nil {
				continue
			}
			switch rng.IntN(4) {
			case 0:
				name := fmt.Sprintf("live%d", s)
				b.slotName.set(uint32(s), name)
				b.slots.set(name, uint32(s))
			case 1:
				b.slotName.set(uint32(s), fmt.Sprintf("stale%d", s))
			}
		}
		b.nextSlot = uint32(1 + rng.IntN(limit+100))
		p := &engine.Policy{}
		seen := map[string]bool{}
		for range rng.IntN(3 * limit) {
			var name string
			switch rng.IntN(4) {
			case 0: // a live rule that stays
				name = fmt.Sprintf("live%d", 1+rng.IntN(limit))
			case 1: // a stale name back
				name = fmt.Sprintf("stale%d", 1+rng.IntN(limit))
			default:
				name = fmt.Sprintf("new%d", len(p.Rules))
			}
			if !seen[name] {
				seen[name] = true
				p.Rules = append(p.Rules, engine.Rule{Name: name})
			}
		}
		ahead := b.chunksAhead(p)
		var got []uint32
		for _, r := range p.Rules {
			s := b.slotFor(r.Name)
			if c := s >> counterChunkBits; b.counters.chunks[c] == nil && !slices.Contains(got, c) {
				got = append(got, c)
			}
		}
		slices.Sort(ahead)
		slices.Sort(got)
		if !slices.Equal(ahead, got) {
			t.Fatalf("round %d (limit %d, next %d, %d rules): chunks ahead %v, slotFor handed slots in %v", round, limit, b.nextSlot, len(p.Rules), ahead, got)
		}
	}
}

// TestReusedSlotStartsFromZero: a slot never handed out since its chunk was
// created is not reset when a rule gets it (it is zero, epoch 0), but once
// handed out it is, when a later rule gets it again: the new rule counts
// from zero, and the allows the memo still holds for the slot's first rule
// (epoch 0) are not moved into it.
func TestReusedSlotStartsFromZero(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "reuse")
	const port, sends = 9, 300
	udp := []attempt{{Proto: "udp", Op: "sendto", Sock: 4, Addr: "127.0.0.1", Port: port, Repeat: sends}}
	allow := func(name string) engine.Rule {
		return engine.Rule{Name: name, Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny,
			Allow: []engine.Dest{{Prefix: netip.MustParsePrefix("127.0.0.1/32"), PortLo: port, PortHi: port, Proto: engine.ProtoUDP}}}
	}
	counted := func(name string) engine.Counters {
		t.Helper()
		st, err := b.State(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st.RuleCounter[name]
	}
	// Slot 1 to the first rule, the chunk's other slots to decoys.
	first := &engine.Policy{Rules: []engine.Rule{allow("first")}}
	for i := 2; i < counterChunk-1; i++ {
		first.Rules = append(first.Rules, denyRule(fmt.Sprintf("decoy%d", i), fmt.Sprintf("/nonexistent/reuse/%d", i)))
	}
	b.apply(t, first)
	slot, ok := b.ruleID("first")
	if !ok || slot != 1 {
		t.Fatalf("first rule has slot %d (%v), want 1", slot, ok)
	}
	runClient(t, exe, cg, udp)
	if c := counted("first"); c.Allowed != sends {
		t.Fatalf("first rule after %d sends: %+v", sends, c)
	}
	// Past the chunk, with few slots live: the walk wraps to slot 1.
	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("a", "/nonexistent/reuse/a")}})
	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("b", "/nonexistent/reuse/b")}})
	b.apply(t, &engine.Policy{Rules: []engine.Rule{allow("again")}})
	if s, _ := b.ruleID("again"); s != slot {
		t.Fatalf("rule again has slot %d, want %d (the first rule's, reused)", s, slot)
	}
	if c := counted("again"); c != (engine.Counters{}) {
		t.Fatalf("rule given a used slot starts at %+v", c)
	}
	runClient(t, exe, cg, udp)
	if c := counted("again"); c.Allowed != sends || c.Denied != 0 {
		t.Fatalf("rule given a used slot after %d sends: %+v", sends, c)
	}
}

// TestNameSnapshotKeepsPolicyBefore: events of rules the last apply removed
// may still be in flight: the snapshot names them from the policy before.
func TestNameSnapshotKeepsPolicyBefore(t *testing.T) {
	old := &engine.Rule{Name: "gone", Selector: engine.Selector{Exe: "/old"}}
	kept0 := &engine.Rule{Name: "kept", Selector: engine.Selector{Exe: "/before"}}
	kept1 := &engine.Rule{Name: "kept", Selector: engine.Selector{Exe: "/after"}}
	s := &nameSnapshot{rules: slotRuleTable{nil, nil, kept1}, before: map[string]*engine.Rule{"gone": old, "kept": kept0}}
	if r := s.rule(2, "kept"); r != kept1 {
		t.Errorf("kept: %+v, want the rule applied", r)
	}
	if r := s.rule(1, "gone"); r != old {
		t.Errorf("gone: %+v, want the rule before", r)
	}
	if r := s.rule(2, "gone"); r != old { // its slot handed to another rule since
		t.Errorf("gone: %+v, want the rule before", r)
	}
	if r := s.rule(5, "never"); r != nil {
		t.Errorf("never: %+v, want none", r)
	}
}

// TestNameSnapshotKeepsOnlyRemovedRules: the snapshot's rules before are
// copies of the rules the apply removed, not pointers into the policy
// before, which would keep that whole policy alive until the next apply.
// Both kinds of apply: whole, and a few rules changed (applyDelta).
func TestNameSnapshotKeepsOnlyRemovedRules(t *testing.T) {
	requireKernel(t)
	b := newTestBackend(t, scratchCgroup(t))
	dir := t.TempDir()
	policy := func(names ...string) *engine.Policy {
		p := &engine.Policy{}
		for _, n := range names {
			p.Rules = append(p.Rules, engine.Rule{Name: n, Selector: engine.Selector{Exe: clientCopy(t, dir, n)}, Action: engine.ActionDeny,
				Deny: []engine.Dest{{Prefix: netip.MustParsePrefix("192.0.2.0/24")}}})
		}
		return p
	}
	for _, how := range []struct {
		name string
		ctx  context.Context
	}{{"whole", context.Background()}, {"delta", engine.WithOwnedPolicy(context.Background())}} {
		t.Run(how.name, func(t *testing.T) {
			before := policy("a", "b", "c")
			if err := b.Apply(how.ctx, before); err != nil {
				t.Fatal(err)
			}
			if err := b.Apply(how.ctx, policy("a", "c")); err != nil {
				t.Fatal(err)
			}
			s := b.names.Load()
			if len(s.before) != 1 || s.before["b"] == nil || s.before["b"].Exe != before.Rules[1].Exe {
				t.Fatalf("rules before: %v, want b alone", s.before)
			}
			lo := uintptr(unsafe.Pointer(unsafe.SliceData(before.Rules)))
			hi := lo + uintptr(len(before.Rules))*unsafe.Sizeof(engine.Rule{})
			dlo := uintptr(unsafe.Pointer(unsafe.SliceData(before.Rules[1].Deny)))
			if at := uintptr(unsafe.Pointer(s.before["b"])); at >= lo && at < hi {
				t.Error("the snapshot points into the rules of the policy before")
			}
			if at := uintptr(unsafe.Pointer(unsafe.SliceData(s.before["b"].Deny))); at == dlo {
				t.Error("the snapshot shares the entries of the policy before")
			}
		})
	}
}
