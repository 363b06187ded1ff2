//go:build linux

package linux

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/exewall/exewall/engine"
)

// An edit that changes only an entry's DNS name or its direction compiles
// the rule again: the generations share a rule's compiled entries only
// while the policy says the same of it (entriesSum, with its action and audit).
func TestRuleOutRecompiledOnNameOrDirection(t *testing.T) {
	dest := func(s string) engine.Dest {
		t.Helper()
		d, err := engine.ParseDest(s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	policy := func(allow string) *engine.Policy {
		return &engine.Policy{Default: engine.ActionDeny, Rules: []engine.Rule{{
			Name: "r", Selector: engine.Selector{User: "0"}, Action: engine.ActionDeny,
			Allow: []engine.Dest{dest(allow)},
		}}}
	}
	ids := identities{uids: map[string]uint32{"0": 0}}
	slots := func(string) uint32 { return 1 }
	for _, tc := range []struct{ before, after string }{
		{"a.example.com port 443 tcp", "b.example.com port 443 tcp"},
		{"10.0.0.0/8 port 22 tcp", "10.0.0.0/8 port 22 tcp in"},
		{"*.example.com", "example.com"},
	} {
		first, err := compile(policy(tc.before), ids, slotFunc(slots))
		if err != nil {
			t.Fatal(err)
		}
		same, err := compile(policy(tc.before), ids, slotFunc(slots), first)
		if err != nil {
			t.Fatal(err)
		}
		if same.rules.get(1) != first.rules.get(1) {
			t.Errorf("%q: an unchanged rule was compiled again", tc.before)
		}
		next, err := compile(policy(tc.after), ids, slotFunc(slots), first)
		if err != nil {
			t.Fatal(err)
		}
		want := policy(tc.after)
		if next.rules.get(1) == first.rules.get(1) || next.rules.get(1).sum != entriesSum(&want.Rules[0]) {
			t.Errorf("%q -> %q: the rule kept what was compiled before the edit", tc.before, tc.after)
		}
	}
}

// TestEntriesSumTellsEveryFieldApart: a rule's sum changes with every field
// compile reads but its action and audit (kept in the compiled rule), and
// stays with its lines and with its entries' lines; entries do not run
// into one another (a list's end is not the next one's start).
func TestEntriesSumTellsEveryFieldApart(t *testing.T) {
	base := func() engine.Rule {
		return engine.Rule{Name: "r", Selector: engine.Selector{Exe: "/usr/bin/curl"}, Action: engine.ActionDeny, Line: 3,
			Allow: []engine.Dest{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), PortLo: 443, PortHi: 443, Proto: engine.ProtoTCP, Line: 4}}}
	}
	b := base()
	sum := entriesSum(&b)
	for name, change := range map[string]func(*engine.Rule){
		"line":         func(r *engine.Rule) { r.Line = 9 },
		"entry line":   func(r *engine.Rule) { r.Allow[0].Line = 9 },
		"action":       func(r *engine.Rule) { r.Action = engine.ActionAllow },
		"audit":        func(r *engine.Rule) { r.Audit = true },
		"same entries": func(r *engine.Rule) { r.Allow = slices.Clone(r.Allow) },
	} {
		r := base()
		change(&r)
		if entriesSum(&r) != sum {
			t.Errorf("%s: the sum changed", name)
		}
	}
	for name, change := range map[string]func(*engine.Rule){
		"name":          func(r *engine.Rule) { r.Name = "s" },
		"exe":           func(r *engine.Rule) { r.Exe = "/usr/bin/wget" },
		"exe to user":   func(r *engine.Rule) { r.User, r.Exe = r.Exe, "" },
		"name into exe": func(r *engine.Rule) { r.Name, r.Exe = "", "r/usr/bin/curl" },
		"prefix":        func(r *engine.Rule) { r.Allow[0].Prefix = netip.MustParsePrefix("192.0.2.0/25") },
		"v4 in v6": func(r *engine.Rule) {
			r.Allow[0].Prefix = netip.PrefixFrom(netip.MustParseAddr("::ffff:192.0.2.0"), 24)
		},
		"port":           func(r *engine.Rule) { r.Allow[0].PortHi = 444 },
		"proto":          func(r *engine.Rule) { r.Allow[0].Proto = engine.ProtoUDP },
		"direction":      func(r *engine.Rule) { r.Allow[0].Dir = engine.DirIn },
		"dns name":       func(r *engine.Rule) { r.Allow[0].Name = "example.com" },
		"allow to deny":  func(r *engine.Rule) { r.Deny, r.Allow = r.Allow, nil },
		"one more entry": func(r *engine.Rule) { r.Allow = append(r.Allow, r.Allow[0]) },
		"no entry":       func(r *engine.Rule) { r.Allow = nil },
	} {
		r := base()
		change(&r)
		if entriesSum(&r) == sum {
			t.Errorf("%s: the sum stayed", name)
		}
	}
}

// TestDestOutKeepsItsValue: a node's value reads back as compiled, for
// every entry count, and nodes compare equal exactly when their values do.
func TestDestOutKeepsItsValue(t *testing.T) {
	k := datapathDestKey{Rule: 7, Family: 4, Plen: 24}
	var prev destOut
	for n := 0; n <= maxDestEntries; n++ {
		var v datapathDestVal
		for i := range n {
			v.E[i] = datapathDestEntry{PortLo: uint16(i), PortHi: uint16(i + 1), Proto: 6, Verdict: uint8(i % 2), Dir: 1}
		}
		v.Count = uint32(n)
		d := newDestOut(k, v)
		if d.val() != v {
			t.Fatalf("%d entries read back as %+v", n, d.val())
		}
		if d == prev || d != newDestOut(k, v) {
			t.Fatalf("%d entries: equality does not follow the value", n)
		}
		prev = d
	}
}

// TestRuleOutKeepsItsKeys: what a ruleOut says it writes is what it was
// given, for the usual exe rule (one identity, kept inline), the rare ones
// (several identities, symlink names) and selector rules.
func TestRuleOutKeepsItsKeys(t *testing.T) {
	a, b := datapathFileId{Dev: 1, Ino: 2}, datapathFileId{Dev: 1, Ino: 3}
	for _, tc := range []struct {
		keys  []datapathFileId
		names []uint64
	}{{nil, nil}, {[]datapathFileId{a}, nil}, {[]datapathFileId{a, b}, nil}, {[]datapathFileId{a}, []uint64{7}}, {nil, []uint64{7, 8}}} {
		var o ruleOut
		o.setExe(tc.keys, tc.names)
		if !slices.Equal(o.exe(), tc.keys) || !slices.Equal(o.names(), tc.names) || o.selID() != 0 {
			t.Errorf("%v %v: reads back %v %v (id %d)", tc.keys, tc.names, o.exe(), o.names(), o.selID())
		}
		c := o // as withAction copies it
		if !c.sharesIDs(&o) || !slices.Equal(c.exe(), tc.keys) {
			t.Errorf("%v %v: a copy does not hold the same keys", tc.keys, tc.names)
		}
	}
	var o ruleOut
	o.setSel(selUser, 1000, true)
	if o.selID() != 1000 || o.exe() != nil || o.names() != nil || !o.hasID {
		t.Errorf("user rule: id %d exe %v names %v", o.selID(), o.exe(), o.names())
	}
}
