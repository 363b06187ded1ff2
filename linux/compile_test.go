//go:build linux

package linux

import (
	"math/rand/v2"
	"net/netip"
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
