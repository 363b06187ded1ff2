//go:build linux

package linux

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

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

	slot := b.slots["d"]
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
