//go:build linux

package linux

import (
	"context"
	"testing"

	"github.com/exewall/exewall/engine"
)

// TestRuleIDStable inserts a rule before another and restarts the daemon on
// the same pins: the rule keeps its id throughout, and what the datapath
// enforces follows each policy (the apply writes only what changed).
func TestRuleIDStable(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	pinDir := scratchPinDir(t)
	dir := t.TempDir()
	denied, other := clientCopy(t, dir, "denied"), clientCopy(t, dir, "other")
	port := listenLoopback(t)
	ctx := context.Background()
	d := engine.Rule{Name: "d", Selector: engine.Selector{Exe: denied}, Action: engine.ActionDeny}
	o := engine.Rule{Name: "o", Selector: engine.Selector{Exe: other}, Action: engine.ActionDeny}

	first, err := New(ctx, Config{Cgroup: cg, PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Apply(ctx, &engine.Policy{Rules: []engine.Rule{d}}); err != nil {
		t.Fatal(err)
	}
	id, ok := first.ruleID("d")
	if !ok || id == 0 {
		t.Fatalf("ruleID(d) = %d, %v", id, ok)
	}
	if _, ok := first.ruleID("o"); ok {
		t.Fatal("ruleID of a rule not in force")
	}
	// Insert o before d, then allow o: d's id does not move, and each
	// policy is the one enforced.
	if err := first.Apply(ctx, &engine.Policy{Rules: []engine.Rule{o, d}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := first.ruleID("d"); got != id {
		t.Fatalf("inserting a rule moved d's id from %d to %d", id, got)
	}
	for _, exe := range []string{denied, other} {
		if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
			t.Fatalf("%s not denied after the insert: %+v", exe, out[0])
		}
	}
	oAllow := o
	oAllow.Action = engine.ActionAllow
	for range 3 { // both generations, back to back
		if err := first.Apply(ctx, &engine.Policy{Rules: []engine.Rule{oAllow, d}}); err != nil {
			t.Fatal(err)
		}
		if _, out := runClient(t, other, cg, loopbackTCP(port)); out[0].denied() {
			t.Fatalf("o denied after it was allowed: %+v", out[0])
		}
		if _, out := runClient(t, denied, cg, loopbackTCP(port)); !out[0].denied() {
			t.Fatalf("d not denied: %+v", out[0])
		}
		if err := first.Apply(ctx, &engine.Policy{Rules: []engine.Rule{d}}); err != nil {
			t.Fatal(err)
		}
		if _, out := runClient(t, other, cg, loopbackTCP(port)); out[0].denied() {
			t.Fatalf("o denied after its rule was removed: %+v", out[0])
		}
	}
	first.Close()

	second, err := New(ctx, Config{Cgroup: cg, PinDir: pinDir, DetachOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := second.Apply(ctx, &engine.Policy{Rules: []engine.Rule{o, d}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := second.ruleID("d"); got != id {
		t.Fatalf("d's id after a restart is %d, was %d", got, id)
	}
	for _, exe := range []string{denied, other} {
		if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
			t.Fatalf("%s not denied after the restart: %+v", exe, out[0])
		}
	}
	// Nothing of a removed rule stays in either generation.
	if err := second.Apply(ctx, &engine.Policy{Rules: []engine.Rule{d}}); err != nil {
		t.Fatal(err)
	}
	if err := second.Apply(ctx, &engine.Policy{Rules: []engine.Rule{d}}); err != nil {
		t.Fatal(err)
	}
	for gen := range uint32(2) {
		c, err := second.scanGen(gen)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range c.exe {
			if r.Id&^genBit != id {
				t.Errorf("generation %d holds rule id %d, only d (%d) is in force", gen, r.Id&^genBit, id)
			}
		}
	}
}
