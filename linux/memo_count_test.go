//go:build linux

package linux

import (
	"context"
	"net/netip"
	"testing"

	"github.com/exewall/exewall/engine"
)

// TestMemoCountsExactly: allows the per-CPU memo answers are counted in its
// slots, not in counters, until a slot is rewritten. status must still
// show every one, for a rule with destinations (the memo keeps the
// destination) and one that allows everything (the memo keeps the rule),
// and the totals must not go backwards when the rule is removed.
func TestMemoCountsExactly(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "memocount")
	const port, sends = 9, 400
	udp := []attempt{{Proto: "udp", Op: "sendto", Sock: 4, Addr: "127.0.0.1", Port: port, Repeat: sends}}
	dests := engine.Rule{Name: "dests", Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny,
		Allow: []engine.Dest{{Prefix: netip.MustParsePrefix("127.0.0.1/32"), PortLo: port, PortHi: port, Proto: engine.ProtoUDP}}}
	all := engine.Rule{Name: "all", Selector: engine.Selector{Exe: exe}, Action: engine.ActionAllow}
	other := denyRule("other", "/nonexistent/memocount")

	counted := func(name string) engine.Counters {
		t.Helper()
		st, err := b.State(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st.RuleCounter[name]
	}
	for _, r := range []engine.Rule{dests, all} {
		b.apply(t, &engine.Policy{Rules: []engine.Rule{r, other}})
		for round := 1; round <= 2; round++ {
			_, out := runClient(t, exe, cg, udp)
			if out[0].Errno != "" {
				t.Fatalf("rule %s: sends failed: %+v", r.Name, out[0])
			}
			if c := counted(r.Name); c.Allowed != uint64(round*sends) || c.Denied != 0 {
				t.Fatalf("rule %s after %d sends: %+v, want %d allowed", r.Name, round*sends, c, round*sends)
			}
		}
	}
	st, err := b.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b.apply(t, &engine.Policy{Rules: []engine.Rule{other}})
	after, err := b.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if after.Counters.Allowed != st.Counters.Allowed {
		t.Fatalf("allowed total %d after the rule went, %d before", after.Counters.Allowed, st.Counters.Allowed)
	}
	// A rule given a slot anew starts from zero, whatever the memo still
	// holds for the rule before it.
	b.apply(t, &engine.Policy{Rules: []engine.Rule{all, other}})
	if c := counted("all"); c.Allowed != 0 {
		t.Fatalf("re-added rule starts at %+v", c)
	}
	runClient(t, exe, cg, udp)
	if c := counted("all"); c.Allowed != sends {
		t.Fatalf("re-added rule after %d sends: %+v", sends, c)
	}
}
