//go:build linux

package linux

import (
	"net/netip"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

// TestDNSBindingsAcrossDiffApplies: applies that rewrite only the rules
// that changed (the rule with names untouched) keep every binding in the
// generation they switch to, the one learned while the other generation
// was in force included; a forgotten binding is gone from the generation
// switched to after it, and an edit of the name rule carries its bindings.
func TestDNSBindingsAcrossDiffApplies(t *testing.T) {
	s := newDNSSetup(t)
	other := clientCopy(t, t.TempDir(), "other")
	policy := func(otherAction engine.Action, names ...string) *engine.Policy {
		var allow []engine.Dest
		for _, n := range names {
			allow = append(allow, mustName(t, n))
		}
		p := s.policy(allow...)
		p.Rules = append(p.Rules, engine.Rule{Name: "other", Selector: engine.Selector{Exe: other}, Action: otherAction})
		return p
	}
	b := s.tb.Backend
	s.tb.apply(t, policy(engine.ActionDeny, "a.gen.test", "b.gen.test"))
	id, ok := b.RuleID("names")
	if !ok {
		t.Fatal("no id for rule names")
	}
	learn := func(name, addr string) {
		t.Helper()
		err := b.Learn([]NameBinding{{Rule: id, Names: []string{name}, Addr: netip.MustParseAddr(addr), Expires: time.Now().Add(time.Hour)}})
		if err != nil {
			t.Fatal(err)
		}
	}
	// inKernel says whether the active generation holds addr's binding.
	inKernel := func(addr string) bool {
		t.Helper()
		gen, err := b.activeGen()
		if err != nil {
			t.Fatal(err)
		}
		a := netip.MustParseAddr(addr)
		var v datapathBindVal
		return b.sized.NameBinds.Lookup(bindKeyOf(id|gen<<31, a), &v) == nil
	}
	connect := func(what, addr, want string) {
		t.Helper()
		got := runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{{Direct: addr, ConnectPort: 443}})
		if len(got) != 1 || len(got[0].Connect) != 1 || (got[0].Connect[0] == "EPERM") != (want == "EPERM") {
			t.Errorf("%s: connect to %s: %+v, want %s", what, addr, got, want)
		}
	}

	learn("a.gen.test", "192.0.2.70") // into generation A
	connect("bound in the generation in force", "192.0.2.70", "ok")
	s.tb.apply(t, policy(engine.ActionAllow, "a.gen.test", "b.gen.test")) // B: only "other" written
	connect("after a diff apply", "192.0.2.70", "ok")
	learn("b.gen.test", "192.0.2.71")                                    // into B only
	s.tb.apply(t, policy(engine.ActionDeny, "a.gen.test", "b.gen.test")) // A again
	connect("learned in the other generation", "192.0.2.71", "ok")
	connect("learned two applies ago", "192.0.2.70", "ok")
	s.tb.apply(t, policy(engine.ActionAllow, "a.gen.test", "b.gen.test")) // B
	for _, a := range []string{"192.0.2.70", "192.0.2.71"} {
		if !inKernel(a) {
			t.Errorf("%s: binding missing after a third diff apply", a)
		}
	}

	// Forgotten while B is in force: A, written next, drops it too.
	if err := b.Forget([]NameBinding{{Rule: id, Addr: netip.MustParseAddr("192.0.2.70")}}); err != nil {
		t.Fatal(err)
	}
	connect("forgotten", "192.0.2.70", "EPERM")
	s.tb.apply(t, policy(engine.ActionDeny, "a.gen.test", "b.gen.test")) // A
	connect("forgotten, after an apply", "192.0.2.70", "EPERM")
	if inKernel("192.0.2.70") {
		t.Error("a forgotten binding came back into force")
	}
	connect("kept", "192.0.2.71", "ok")

	// The name rule itself changes (a name removed): the binding of the
	// name left stays; the other goes.
	s.tb.apply(t, policy(engine.ActionDeny, "b.gen.test"))
	connect("binding of a name kept by the edit", "192.0.2.71", "ok")
	learn("b.gen.test", "192.0.2.72")
	s.tb.apply(t, policy(engine.ActionDeny, "a.gen.test"))
	connect("binding of a name the edit removed", "192.0.2.71", "EPERM")
	connect("binding of a name the edit removed", "192.0.2.72", "EPERM")
	s.tb.apply(t, policy(engine.ActionAllow, "a.gen.test"))
	connect("binding of a name removed, one apply later", "192.0.2.72", "EPERM")
}

// TestDNSNameNodes: bindings of one rule whose names match the same
// entries share one name node; a connect to a bound address is judged by
// the name entries (a CIDR host entry of the same address beside them, deny
// first), then by the rule's CIDR entries when no name entry takes it; a
// binding of another rule grants nothing; a binding that runs out denies
// again and leaves name_binds.
func TestDNSNameNodes(t *testing.T) {
	s := newDNSSetup(t)
	other := clientCopy(t, t.TempDir(), "other")
	p := s.policy(engine.Dest{Name: mustName(t, "*.node.test").Name, PortLo: 443, PortHi: 443},
		engine.Dest{Prefix: netip.MustParsePrefix("192.0.2.0/24"), PortLo: 80, PortHi: 80})
	p.Rules[0].Deny = []engine.Dest{{Prefix: netip.MustParsePrefix("192.0.2.91/32")}}
	p.Rules = append(p.Rules, engine.Rule{Name: "other", Selector: engine.Selector{Exe: other}, Action: engine.ActionDeny,
		Allow: []engine.Dest{mustName(t, "*.node.test")}})
	b := s.tb.Backend
	s.tb.apply(t, p)
	id, _ := b.RuleID("names")
	otherID, _ := b.RuleID("other")
	learn := func(rule uint32, name, addr string, ttl time.Duration) {
		t.Helper()
		err := b.Learn([]NameBinding{{Rule: rule, Names: []string{name}, Addr: netip.MustParseAddr(addr), Expires: time.Now().Add(ttl)}})
		if err != nil {
			t.Fatal(err)
		}
	}
	connect := func(what, addr string, port uint16, want string) {
		t.Helper()
		got := runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{{Direct: addr, ConnectPort: port}})
		if len(got) != 1 || len(got[0].Connect) != 1 || (got[0].Connect[0] == "EPERM") != (want == "EPERM") {
			t.Errorf("%s: connect to %s port %d: %+v, want %s", what, addr, port, got, want)
		}
	}
	node := func(addr string) (uint32, bool) {
		t.Helper()
		gen, err := b.activeGen()
		if err != nil {
			t.Fatal(err)
		}
		var v datapathBindVal
		err = b.sized.NameBinds.Lookup(bindKeyOf(id|gen<<31, netip.MustParseAddr(addr)), &v)
		return v.Node, err == nil
	}

	learn(id, "a.node.test", "192.0.2.90", time.Hour)
	learn(id, "b.node.test", "192.0.2.92", time.Hour)
	learn(id, "a.node.test", "192.0.2.91", time.Hour)
	learn(otherID, "c.node.test", "192.0.2.93", time.Hour)
	n90, ok90 := node("192.0.2.90")
	n92, ok92 := node("192.0.2.92")
	if !ok90 || !ok92 || n90 != n92 {
		t.Errorf("two bindings matching the same entry: nodes %d (%v) and %d (%v), want one shared", n90, ok90, n92, ok92)
	}
	connect("name entry", "192.0.2.90", 443, "ok")
	connect("another name, same node", "192.0.2.92", 443, "ok")
	connect("CIDR entry under a bound address", "192.0.2.90", 80, "ok")
	connect("neither", "192.0.2.90", 22, "EPERM")
	connect("not bound", "192.0.2.95", 443, "EPERM")
	connect("CIDR host deny beside the name", "192.0.2.91", 443, "EPERM")
	connect("another rule's binding", "192.0.2.93", 443, "EPERM")

	learn(id, "d.node.test", "192.0.2.94", 1500*time.Millisecond)
	connect("before it runs out", "192.0.2.94", 443, "ok")
	time.Sleep(2 * time.Second)
	b.expireNames()
	connect("run out", "192.0.2.94", 443, "EPERM")
	if _, ok := node("192.0.2.94"); ok {
		t.Error("a binding that ran out is still in name_binds")
	}
}
