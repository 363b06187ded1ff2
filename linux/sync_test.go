//go:build linux

package linux

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/exewall/exewall/engine"
)

// TestSyncRepairsTampering detaches a program and deletes a map entry behind
// the backend's back; Sync must report and repair both.
func TestSyncRepairsTampering(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "tampered")
	port := listenLoopback(t)
	p := &engine.Policy{Rules: []engine.Rule{{Name: "d", Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny}}}
	b.apply(t, p)

	if drifts, err := b.Sync(context.Background(), p); err != nil || len(drifts) != 0 {
		t.Fatalf("clean state: drifts %v, err %v", drifts, err)
	}

	// Tamper 1: detach every link, as `bpftool link detach` would.
	for name, l := range b.links {
		raw, ok := l.(interface{ Detach() error })
		if !ok {
			t.Fatalf("link %T cannot detach", l)
		}
		if err := raw.Detach(); err != nil {
			t.Fatalf("detach %s: %v", name, err)
		}
	}
	if _, out := runClient(t, exe, cg, loopbackTCP(port)); out[0].denied() {
		t.Fatal("detaching did not take the program off the hook; the test proves nothing")
	}
	// Tamper 2: delete the executable's rule from the active generation.
	var k datapathExeKey
	var r datapathRule
	it := b.sized.ExeRules.Iterate()
	for it.Next(&k, &r) {
		break
	}
	if err := b.sized.ExeRules.Delete(k); err != nil {
		t.Fatal(err)
	}
	// And its path entry (which Sync does not compare): the applies after
	// the repair must put it back when they next write that generation.
	var pk datapathPathKey
	pit := b.sized.PathRules.Iterate()
	for pit.Next(&pk, &r) {
		if pk.Gen == k.Gen {
			break
		}
	}
	if err := b.sized.PathRules.Delete(pk); err != nil {
		t.Fatal(err)
	}

	drifts, err := b.Sync(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	var detached, deleted bool
	for _, d := range drifts {
		detached = detached || (d.Repaired && strings.Contains(d.What, "connect4 program was detached"))
		deleted = deleted || (d.Repaired && strings.Contains(d.What, "executable rule entry was deleted"))
	}
	if !detached || !deleted {
		t.Fatalf("drifts %+v", drifts)
	}
	if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("after sync: %+v, want EPERM", out[0])
	}
	if n := attachedPrograms(t, cg); n != len(hooks) {
		t.Fatalf("%d programs attached after repair, want %d", n, len(hooks))
	}
	// The tampered generation is the idle one now: the applies after the
	// repair, which write only what they know differs, must not bring the
	// deleted entry back into force.
	for i := range 2 {
		b.apply(t, p)
		if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
			t.Fatalf("apply %d after the repair: %+v, want EPERM", i+1, out[0])
		}
	}
}

// TestSyncReinstatesCounterChunk takes a counters chunk out of its pinned
// array, as `bpftool map delete` would: the rule's attempts stay denied but
// go uncounted until Sync puts the chunk back and says so.
func TestSyncReinstatesCounterChunk(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "chunkgone")
	port := listenLoopback(t)
	p := &engine.Policy{Rules: []engine.Rule{{Name: "d", Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny}}}
	b.apply(t, p)
	denied := func() uint64 {
		t.Helper()
		st, err := b.State(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st.RuleCounter["d"].Denied
	}
	connect := func(when string) {
		t.Helper()
		if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
			t.Fatalf("%s: %+v, want EPERM", when, out[0])
		}
	}
	connect("before")
	if n := denied(); n != 1 {
		t.Fatalf("denied %d before the tampering, want 1", n)
	}

	slot := b.slots.at("d")
	chunk := slot >> counterChunkBits
	if err := b.objs.Counters.Delete(chunk); err != nil {
		t.Fatalf("delete counters chunk %d: %v", chunk, err)
	}
	connect("chunk gone")
	if n := denied(); n != 1 {
		t.Fatalf("denied %d with the chunk gone, want 1 (the test proves nothing)", n)
	}

	drifts, err := b.Sync(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	var put bool
	for _, d := range drifts {
		put = put || (d.Repaired && strings.Contains(d.What, "counters chunk"))
	}
	if !put {
		t.Fatalf("drifts %+v, want the counters chunk put back", drifts)
	}
	connect("after sync")
	if n := denied(); n != 2 {
		t.Fatalf("denied %d after sync, want 2", n)
	}
	if drifts, err := b.Sync(context.Background(), p); err != nil || len(drifts) != 0 {
		t.Fatalf("second sync: drifts %+v, err %v", drifts, err)
	}
}

// TestSyncOfALargePolicyFindsNoDrift: with nothing tampered, a sync of
// 60,000 rules reports nothing and rewrites nothing. It once read a third
// of the maps' entries as deleted (scanMap took a hash's short batch for
// its end) and rewrote the whole policy every 30 s.
func TestSyncOfALargePolicyFindsNoDrift(t *testing.T) {
	requireKernel(t)
	b := newTestBackend(t, scratchCgroup(t))
	p := &engine.Policy{Default: engine.ActionAllow}
	for i := range 60000 {
		r := engine.Rule{Name: fmt.Sprintf("u%d", i), Selector: engine.Selector{User: fmt.Sprint(2000000 + i)}, Action: engine.ActionDeny}
		if i%2 == 0 {
			pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
			r.Action, r.Allow = engine.ActionAllow, []engine.Dest{{Prefix: pfx, PortLo: 443, PortHi: 443, Proto: engine.ProtoTCP}}
		}
		p.Rules = append(p.Rules, r)
	}
	b.apply(t, p)
	drifts, err := b.Sync(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(drifts) != 0 {
		t.Fatalf("%d drifts with nothing tampered, the first: %+v", len(drifts), drifts[0])
	}
}

// TestSyncFindsEveryKindOfTamper: each change to the maps in force, even
// one that keeps every map's entry count (a key moved to another id), is
// reported and repaired. Sync checks the kernel's entries against the
// rules without building the maps of both sides (holdsExactly); this is
// what it must still see.
func TestSyncFindsEveryKindOfTamper(t *testing.T) {
	requireKernel(t)
	b := newTestBackend(t, scratchCgroup(t))
	dir := t.TempDir()
	a, c := clientCopy(t, dir, "a"), clientCopy(t, dir, "c")
	dest := []engine.Dest{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), PortLo: 443, PortHi: 443, Proto: engine.ProtoTCP}}
	p := &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "a", Selector: engine.Selector{Exe: a}, Action: engine.ActionDeny, Allow: dest},
		{Name: "c", Selector: engine.Selector{Exe: c}, Action: engine.ActionAllow},
		{Name: "u", Selector: engine.Selector{User: "2000001"}, Action: engine.ActionDeny, Allow: dest},
	}}
	b.apply(t, p)
	first := func(m kmap, gen uint32, k, v any, keep func() bool) {
		t.Helper()
		it := m.Iterate()
		for it.Next(k, v) {
			if keep() {
				return
			}
		}
		t.Fatalf("no entry of generation %d: %v", gen, it.Err())
	}
	for _, tc := range []struct {
		name, want string
		tamper     func(gen uint32) error
	}{
		{"exe value changed", "executable rule entry was modified", func(gen uint32) error {
			var k datapathExeKey
			var v datapathRule
			first(b.sized.ExeRules, gen, &k, &v, func() bool { return k.Gen == gen })
			v.Action = uint8(engine.ActionDeny) ^ v.Action // allow <-> deny
			return b.sized.ExeRules.Update(k, v, ebpf.UpdateExist)
		}},
		{"exe key moved to another file", "executable rule entry was added", func(gen uint32) error {
			var k datapathExeKey
			var v datapathRule
			first(b.sized.ExeRules, gen, &k, &v, func() bool { return k.Gen == gen })
			if err := b.sized.ExeRules.Delete(k); err != nil {
				return err
			}
			k.Id.Ino += 1 << 40
			return b.sized.ExeRules.Update(k, v, ebpf.UpdateNoExist)
		}},
		{"user key moved to another uid", "user rule entry was added", func(gen uint32) error {
			var k datapathIdKey
			var v datapathRule
			first(b.sized.UidRules, gen, &k, &v, func() bool { return k.Gen == gen })
			if err := b.sized.UidRules.Delete(k); err != nil {
				return err
			}
			k.Id = 65534
			return b.sized.UidRules.Update(k, v, ebpf.UpdateNoExist)
		}},
		{"destination deleted", "destination entry was deleted", func(gen uint32) error {
			var k datapathDestKey
			var v datapathDestVal
			first(b.sized.Dests, gen, &k, &v, func() bool { return k.Rule>>31 == gen })
			return b.sized.Dests.Delete(k)
		}},
		{"destination widened", "destination entry was modified", func(gen uint32) error {
			var k datapathDestKey
			var v datapathDestVal
			first(b.sized.Dests, gen, &k, &v, func() bool { return k.Rule>>31 == gen })
			v.E[0].PortHi = 65535
			return b.sized.Dests.Update(k, v, ebpf.UpdateExist)
		}},
		{"destination moved to another rule", "destination entry was added", func(gen uint32) error {
			var k datapathDestKey
			var v datapathDestVal
			first(b.sized.Dests, gen, &k, &v, func() bool { return k.Rule>>31 == gen })
			if err := b.sized.Dests.Delete(k); err != nil {
				return err
			}
			k.Rule = gen<<31 | b.slots.at("c")
			return b.sized.Dests.Update(k, v, ebpf.UpdateNoExist)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gen, err := b.activeGen()
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.tamper(gen); err != nil {
				t.Fatal(err)
			}
			drifts, err := b.Sync(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(drifts, func(d engine.Drift) bool { return d.Repaired && strings.Contains(d.What, tc.want) }) {
				t.Fatalf("drifts %+v, want %q repaired", drifts, tc.want)
			}
			if drifts, err := b.Sync(context.Background(), p); err != nil || len(drifts) != 0 {
				t.Fatalf("after the repair: %+v %v", drifts, err)
			}
		})
	}
}

// TestSyncForgetsATamperedIdleGeneration: an entry deleted from the idle
// generation is not in force, so Sync reports nothing; but the next apply,
// which writes only what it knows differs there, would bring the gap into
// force. Sync checks the idle generation too and forgets it when it does
// not hold what the backend knows (the apply then scans it), and keeps it
// otherwise (an apply after a sync stays incremental).
func TestSyncForgetsATamperedIdleGeneration(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "denied")
	other := clientCopy(t, t.TempDir(), "other")
	port := listenLoopback(t)
	policy := func(a engine.Action) *engine.Policy {
		return &engine.Policy{Rules: []engine.Rule{
			{Name: "d", Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny},
			{Name: "o", Selector: engine.Selector{Exe: other}, Action: a},
		}}
	}
	b.apply(t, policy(engine.ActionAllow))
	b.apply(t, policy(engine.ActionDeny)) // both generations hold rule d
	gen, err := b.activeGen()
	if err != nil {
		t.Fatal(err)
	}
	if drifts, err := b.Sync(context.Background(), b.policy); err != nil || len(drifts) != 0 {
		t.Fatalf("clean state: %+v %v", drifts, err)
	}
	if b.gens[gen^1] == nil {
		t.Fatal("a sync with nothing tampered forgot the idle generation")
	}
	idle := gen ^ 1
	slot := b.slots.at("d")
	var k datapathExeKey
	var v datapathRule
	found := false
	for it := b.sized.ExeRules.Iterate(); it.Next(&k, &v); {
		if found = k.Gen == idle && v.Id&^genBit == slot; found {
			break
		}
	}
	if !found {
		t.Fatal("rule d has no entry in the idle generation")
	}
	if err := b.sized.ExeRules.Delete(k); err != nil {
		t.Fatal(err)
	}
	// Its path entry too: the exec hook finds a rule by either.
	var pk datapathPathKey
	for it := b.sized.PathRules.Iterate(); it.Next(&pk, &v); {
		if pk.Gen == idle && v.Id&^genBit == slot {
			if err := b.sized.PathRules.Delete(pk); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if drifts, err := b.Sync(context.Background(), b.policy); err != nil || len(drifts) != 0 {
		t.Fatalf("the generation in force was not touched: %+v %v", drifts, err)
	}
	for i, a := range []engine.Action{engine.ActionAllow, engine.ActionDeny} {
		b.apply(t, policy(a))
		if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
			t.Fatalf("apply %d after the sync: %+v, want EPERM", i+1, out[0])
		}
	}
}
