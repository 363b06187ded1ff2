//go:build linux

package linux

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/exewall/exewall/engine"
)

// TestNameNodeMatchesEvaluator: a binding's name node, then the rule's
// CIDR nodes when no entry of the name node takes the attempt (as
// bpf/verdict.h match_dests tries them), decide every attempt to its
// address as the reference evaluator does with that binding (names as host
// entries, most specific first, deny first at equal specificity), over
// random rules.
func TestNameNodeMatchesEvaluator(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	addr := netip.MustParseAddr("192.0.2.77")
	prefixes := []string{"192.0.2.77/32", "192.0.2.0/24", "192.0.0.0/16", "0.0.0.0/0", "198.51.100.0/24"}
	names := []string{"api.example.test", "*.example.test", "other.test", "*.test"}
	bound := []string{"api.example.test", "cdn.edge.test"}
	for i := range 2000 {
		r := &engine.Rule{Name: "r", Action: engine.ActionDeny}
		for range 1 + rng.IntN(6) {
			d := engine.Dest{}
			if rng.IntN(2) == 0 {
				n, _ := engine.ParseName(names[rng.IntN(len(names))])
				d.Name = n
			} else {
				d.Prefix = netip.MustParsePrefix(prefixes[rng.IntN(len(prefixes))])
			}
			if rng.IntN(3) == 0 {
				d.PortLo = uint16(440 + rng.IntN(5))
				d.PortHi = d.PortLo + uint16(rng.IntN(3))
			}
			d.Proto = engine.Proto(rng.IntN(3))
			if rng.IntN(2) == 0 {
				r.Allow = append(r.Allow, d)
			} else {
				r.Deny = append(r.Deny, d)
			}
		}
		val, named, err := nameNode(r, addr, bound)
		if err != nil {
			t.Fatal(err)
		}
		dests := map[datapathDestKey]datapathDestVal{}
		if err := compileDests(r, 7, dests); err != nil {
			t.Fatal(err)
		}
		// The rule's longest CIDR node containing addr.
		var cidr datapathDestVal
		for bits := 32; bits >= 0; bits-- {
			if v, ok := dests[destKey(7, netip.PrefixFrom(addr, bits).Masked())]; ok {
				cidr = v
				break
			}
		}
		for _, port := range []uint16{80, 441, 443, 445} {
			for _, proto := range []engine.Proto{engine.ProtoTCP, engine.ProtoUDP} {
				want, wok := engine.MatchAttempt(r, engine.Attempt{Dir: engine.DirOut, Addr: addr, Port: port, Proto: proto}, bound)
				first := func(v datapathDestVal) uint8 {
					for _, e := range v.E[:v.Count] {
						if (e.Proto == 0 || e.Proto == uint8(proto)) && port >= e.PortLo && port <= e.PortHi {
							return e.Verdict
						}
					}
					return 0
				}
				got := first(val)
				if got == 0 {
					got = first(cidr)
				}
				wantV := uint8(0)
				if wok {
					wantV = verdictAllow
					if want.Verdict == engine.VerdictDeny {
						wantV = verdictDeny
					}
				}
				if named && got != wantV {
					t.Fatalf("case %d port %d proto %d: node says %d, evaluator %d (%+v)\nrule %+v", i, port, proto, got, wantV, want, r)
				}
			}
		}
	}
}
