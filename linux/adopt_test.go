//go:build linux

package linux

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/exewall/exewall/engine"
)

// TestRestartAdoptsPinnedLinks closes a backend the way a stopping daemon
// does (enforcement stays), then starts another on the same pins: the policy
// must hold throughout and the programs must not be attached twice.
func TestRestartAdoptsPinnedLinks(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	pinDir := scratchPinDir(t)
	exe := clientCopy(t, t.TempDir(), "denied")
	port := listenLoopback(t)
	p := &engine.Policy{Rules: []engine.Rule{{Name: "d", Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny}}}

	first, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	first.Close()
	if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("enforcement lapsed when the first backend closed: %+v", out[0])
	}

	second, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir, DetachOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if n := attachedPrograms(t, cg); n != len(hooks) {
		t.Fatalf("%d programs attached after adoption, want %d", n, len(hooks))
	}
	if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("adopted programs do not enforce: %+v", out[0])
	}
	st, err := second.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c := st.RuleCounter["d"]; c.Denied != 2 {
		t.Errorf("counters did not survive the restart: %+v", c)
	}
	// What the daemon's READY line says, without the counters.
	if d := second.Describe(); d.Backend != st.Backend || d.AttachPoint != st.AttachPoint || !slices.Equal(d.Hooks, st.Hooks) || d.Rules != st.Rules {
		t.Errorf("Describe says %+v, State %+v", d, st)
	}
	if err := second.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if n := attachedPrograms(t, cg); n != len(hooks) {
		t.Fatalf("%d programs attached after re-apply, want %d", n, len(hooks))
	}
}

// TestRestartApplyRemovesEveryStaleEntry: a daemon restarted on its pins
// knows nothing of what the idle generation holds, so its first apply
// scans it and deletes what the new policy does not want. Here that
// generation held 60,000 user rules, one of them denying uid 65534; the
// new policy has one rule. Every other entry must go: the scan once read
// only part of a large hash, and what it missed stayed in force.
func TestRestartApplyRemovesEveryStaleEntry(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	pinDir := scratchPinDir(t)
	exe := clientCopy(t, publicDir(t), "client")
	port := listenLoopback(t)
	large := func(def engine.Action) *engine.Policy {
		p := &engine.Policy{Default: def}
		for i := range 60000 {
			p.Rules = append(p.Rules, engine.Rule{Name: fmt.Sprintf("u%d", i), Selector: engine.Selector{User: fmt.Sprint(2000000 + i)}, Action: engine.ActionDeny})
		}
		p.Rules[1].User = "65534"
		return p
	}
	first, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	// Both generations hold the large policy.
	for _, p := range []*engine.Policy{large(engine.ActionAllow), large(engine.ActionLocalOnly)} {
		if err := first.Apply(context.Background(), p); err != nil {
			first.Close()
			t.Fatal(err)
		}
	}
	first.Close()

	second, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir, DetachOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	small := &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{{Name: "one", Selector: engine.Selector{User: "2000000"}, Action: engine.ActionDeny}}}
	if err := second.Apply(context.Background(), small); err != nil {
		t.Fatal(err)
	}
	gen, err := second.activeGen()
	if err != nil {
		t.Fatal(err)
	}
	inForce := 0
	var k datapathIdKey
	var r datapathRule
	it := second.sized.UidRules.Iterate()
	for it.Next(&k, &r) {
		if k.Gen == gen {
			inForce++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if inForce != 1 {
		t.Errorf("%d user rule entries in force, want 1", inForce)
	}
	if _, out := runClient(t, exe, cg, loopbackTCP(port), asAttacker); out[0].denied() {
		t.Errorf("uid %d, whose rule was removed, is still denied: %+v", attackerUID, out[0])
	}
}
