//go:build linux

package linux

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/exewall/exewall/engine"
)

// lookupLikeKernel does what the datapath does with the compiled nodes: one
// exact lookup per prefix length of the rule, longest first; the first node
// found decides with its entries in order.
func lookupLikeKernel(dests map[datapathDestKey]datapathDestVal, dr *datapathRule, dst netip.Addr, port uint16, proto engine.Proto) (engine.Verdict, bool) {
	dst = dst.Unmap()
	lens := dr.Lens6[:dr.Nlens6]
	if dst.Is4() {
		lens = dr.Lens4[:dr.Nlens4]
	}
	var best *datapathDestVal
	for _, bits := range lens {
		if v, ok := dests[destKey(dr.Id, netip.PrefixFrom(dst, int(bits)))]; ok {
			best = &v
			break
		}
	}
	if best == nil {
		return "", false
	}
	for i := uint32(0); i < best.Count; i++ {
		e := best.E[i]
		if e.Proto != 0 && e.Proto != uint8(proto) {
			continue
		}
		if port < e.PortLo || port > e.PortHi {
			continue
		}
		if e.Verdict == verdictAllow {
			return engine.VerdictAllow, true
		}
		return engine.VerdictDeny, true
	}
	return "", false
}

// TestCompiledDestsMatchEvaluator checks the flattened trie against the
// reference evaluator on random rules and destinations.
func TestCompiledDestsMatchEvaluator(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	bases := []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("10.1.200.3"), netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("2001:db8:1::5")}
	randDest := func() engine.Dest {
		a := bases[rng.IntN(len(bases))]
		bits := rng.IntN(a.BitLen() + 1)
		d := engine.Dest{Prefix: netip.PrefixFrom(a, bits).Masked(), Proto: engine.Proto(rng.IntN(3))}
		if rng.IntN(2) == 0 {
			lo := uint16(1 + rng.IntN(100))
			d.PortLo, d.PortHi = lo, lo+uint16(rng.IntN(50))
		}
		return d
	}
	for round := 0; round < 300; round++ {
		r := engine.Rule{Name: "r"}
		for i := rng.IntN(4); i > 0; i-- {
			r.Allow = append(r.Allow, randDest())
		}
		for i := rng.IntN(4); i > 0; i-- {
			r.Deny = append(r.Deny, randDest())
		}
		dests := map[datapathDestKey]datapathDestVal{}
		if err := compileDests(&r, 7, dests); err != nil {
			t.Fatal(err)
		}
		dr := datapathRule{Id: 7}
		if err := prefixLens(&r, &dr); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 200; i++ {
			a := bases[rng.IntN(len(bases))]
			b := a.As16()
			b[15] ^= byte(rng.IntN(256))
			if rng.IntN(2) == 0 {
				b[13] ^= byte(rng.IntN(256))
			}
			dst := netip.AddrFrom16(b)
			if a.Is4() {
				dst = dst.Unmap()
			}
			port := uint16(rng.IntN(160))
			proto := engine.Proto(1 + rng.IntN(2))
			wv, wok := engine.MatchDests(&r, dst, port, proto)
			gv, gok := lookupLikeKernel(dests, &dr, dst, port, proto)
			if wv != gv || wok != gok {
				t.Fatalf("rule %+v, %s:%d/%s: evaluator (%q,%v) compiled (%q,%v)", r, dst, port, proto, wv, wok, gv, gok)
			}
		}
	}
}

// TestCompileActionChange: a rule whose action or audit alone changed is
// compiled from the previous generation's ruleOut to exactly what compiling
// it afresh gives, and one whose entries changed too is compiled afresh.
func TestCompileActionChange(t *testing.T) {
	pfx := netip.MustParsePrefix
	dests := [][2][]engine.Dest{
		{nil, nil},
		{{{Prefix: pfx("10.0.0.0/8"), PortLo: 443, PortHi: 443, Proto: engine.ProtoTCP}}, nil},
		{nil, {{Prefix: pfx("192.0.2.0/24"), Dir: engine.DirIn}}},
		{{{Prefix: pfx("2001:db8::/32")}}, {{Prefix: pfx("2001:db8::1/128"), Dir: engine.DirOut}}},
	}
	ids := identities{exe: exeIDsOf(map[string][]engine.FileID{"/bin/x": {{Dev: 1, Ino: 2}}}),
		cgroups: map[string]uint64{}, uids: map[string]uint32{}, gids: map[string]uint32{}}
	actions := []engine.Action{engine.ActionAllow, engine.ActionDeny, engine.ActionLocalOnly}
	for _, d := range dests {
		for _, from := range actions {
			for _, to := range actions {
				for _, audit := range []bool{false, true} {
					r := engine.Rule{Name: "x", Selector: engine.Selector{Exe: "/bin/x"}, Action: from, Allow: d[0], Deny: d[1]}
					slots := func(string) uint32 { return 7 }
					prev, err := compile(&engine.Policy{Rules: []engine.Rule{r}}, ids, slotFunc(slots))
					if err != nil {
						t.Fatal(err)
					}
					r.Action, r.Audit = to, audit
					got, err := compile(&engine.Policy{Rules: []engine.Rule{r}}, ids, slotFunc(slots), prev)
					if err != nil {
						t.Fatal(err)
					}
					want, err := compileRule(&r, 7, ids)
					if err != nil {
						t.Fatal(err)
					}
					g := got.rules.get(7)
					if g.rule.Action != uint8(to) || g.rule.Audit != b2u(audit) || g.sum != want.sum || g.stamped(0) != want.stamped(0) || !g.sameKeys(want) {
						t.Errorf("%v -> %v audit %v, entries %v: got %+v, want %+v", from, to, audit, d, g.rule, want.rule)
					}
					for _, w := range want.dests {
						if v, _ := g.dest(w.key); v != w {
							t.Errorf("%v -> %v: node %v is %v, want %v", from, to, w.key, v.val(), w.val())
						}
					}
					if (from == to && !audit) != (g == prev.rules.get(7)) {
						t.Errorf("%v -> %v audit %v: ruleOut reused %v", from, to, audit, g == prev.rules.get(7))
					}
				}
			}
		}
	}
	// Another entry: compiled afresh, not patched.
	r := engine.Rule{Name: "x", Selector: engine.Selector{Exe: "/bin/x"}, Action: engine.ActionDeny}
	prev, _ := compile(&engine.Policy{Rules: []engine.Rule{r}}, ids, slotFunc(func(string) uint32 { return 7 }))
	r.Action, r.Allow = engine.ActionAllow, []engine.Dest{{Prefix: pfx("10.0.0.0/8")}}
	got, _ := compile(&engine.Policy{Rules: []engine.Rule{r}}, ids, slotFunc(func(string) uint32 { return 7 }), prev)
	if o := got.rules.get(7); len(o.dests) != 1 || o.rule.HasDests != 1 || o.stamped(0).Nlens4 != 1 {
		t.Errorf("entries changed with the action: %+v, %v", o.rule, o.dests)
	}
}

// TestStampedLensArePrefixLens: the prefix lengths a ruleOut's value
// carries, made from its destination nodes, are those prefixLens finds in
// its rule: per family, distinct, longest first, names left out.
func TestStampedLensArePrefixLens(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	v4 := []string{"0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "192.0.2.0/24", "198.51.100.0/24"}
	v6 := []string{"::/0", "2001:db8::/32", "2001:db8:1::/48", "2001:db8::1/128", "fd00::/8"}
	for round := range 500 {
		r := engine.Rule{Name: "x", Selector: engine.Selector{Exe: "/bin/x"}, Action: engine.ActionAllow}
		for range 1 + rng.IntN(6) {
			var d engine.Dest
			switch rng.IntN(3) {
			case 0:
				d.Prefix = netip.MustParsePrefix(v4[rng.IntN(len(v4))])
			case 1:
				d.Prefix = netip.MustParsePrefix(v6[rng.IntN(len(v6))])
			default:
				d.Name = "example.com"
			}
			if rng.IntN(2) == 0 {
				r.Allow = append(r.Allow, d)
			} else {
				r.Deny = append(r.Deny, d)
			}
		}
		ids := identities{exe: exeIDsOf(map[string][]engine.FileID{"/bin/x": {{Dev: 1, Ino: 2}}})}
		o, err := compileRule(&r, 7, ids)
		if err != nil {
			t.Fatal(err)
		}
		var want datapathRule
		if err := prefixLens(&r, &want); err != nil {
			t.Fatal(err)
		}
		got := o.stamped(0)
		if got.Nlens4 != want.Nlens4 || got.Lens4 != want.Lens4 || got.Nlens6 != want.Nlens6 || got.Lens6 != want.Lens6 {
			t.Fatalf("round %d, %v / %v: lengths %v %v / %v %v, want %v %v / %v %v", round, r.Allow, r.Deny,
				got.Nlens4, got.Lens4, got.Nlens6, got.Lens6, want.Nlens4, want.Lens4, want.Nlens6, want.Lens6)
		}
	}
}

// TestCompileSeesChangedIdentities: a rule that did not change is taken
// from the previous generation only with the identities its executable has
// now, however they changed: resolved again (withFound), or patched in
// place by an incremental apply (set). Reusing without comparing is for
// a generation compiled from the very identities of this apply.
func TestCompileSeesChangedIdentities(t *testing.T) {
	oldID, newID := engine.FileID{Dev: 1, Ino: 2}, engine.FileID{Dev: 1, Ino: 3}
	r := engine.Rule{Name: "x", Selector: engine.Selector{Exe: "/bin/x"}, Action: engine.ActionDeny}
	p := &engine.Policy{Rules: []engine.Rule{r}}
	slots := slotFunc(func(string) uint32 { return 7 })
	idsOf := func(e exeIDs) identities {
		return identities{exe: e, cgroups: map[string]uint64{}, uids: map[string]uint32{}, gids: map[string]uint32{}}
	}
	for _, tc := range []struct {
		name   string
		change func(exeIDs) exeIDs
	}{
		{"resolved again", func(e exeIDs) exeIDs {
			return e.withFound([]string{"/bin/x"}, resolved{"/bin/x": {id: newID, hasID: true}})
		}},
		{"patched in place", func(e exeIDs) exeIDs {
			e.set("/bin/x", &exeEntry{id: newID, hasID: true}, []engine.FileID{newID})
			return e
		}},
	} {
		ids := idsOf(exeIDsOf(map[string][]engine.FileID{"/bin/x": {oldID}}))
		first, err := compile(p, ids, slots)
		if err != nil {
			t.Fatal(err)
		}
		again, err := compile(p, ids, slots, first)
		if err != nil {
			t.Fatal(err)
		}
		if again.rules.get(7) != first.rules.get(7) {
			t.Errorf("%s: the same rule with the same identities compiled again", tc.name)
		}
		now := idsOf(tc.change(ids.exe))
		got, err := compile(p, now, slots, again, first)
		if err != nil {
			t.Fatal(err)
		}
		want := datapathFileId{Dev: newID.Dev, Igen: newID.Gen, Ino: newID.Ino}
		if exe := got.rules.get(7).exe(); !slices.Contains(exe, want) {
			t.Errorf("%s: the rule holds %v, want the executable's identity now, %v", tc.name, exe, want)
		}
	}
}
