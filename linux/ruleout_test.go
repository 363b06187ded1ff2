//go:build linux

package linux

import (
	"testing"

	"github.com/exewall/exewall/engine"
)

// An edit that changes only an entry's DNS name or its direction compiles
// the rule again: the generations share a rule's compiled entries only
// while the policy says the same of it (sameEntries, with its action and audit).
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
		if next.rules.get(1) == first.rules.get(1) || next.rules.get(1).src.Allow[0] != dest(tc.after) {
			t.Errorf("%q -> %q: the rule kept what was compiled before the edit", tc.before, tc.after)
		}
	}
}
