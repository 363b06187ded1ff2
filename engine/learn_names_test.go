package engine

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func look(name, addr string) LearnLookup {
	return LearnLookup{Name: name, Addr: netip.MustParseAddr(addr)}
}

// TestLearnNames: where the program looked the address up, the learned
// entry is the name; where it did not, the address. Siblings fold under a
// wildcard only with FoldNames, and never above a registrable domain.
func TestLearnNames(t *testing.T) {
	rep := LearnReport{Previous: PolicyView{Default: "allow", Mode: "enforce"}, Observed: []LearnExe{{
		Exe: "/opt/app/sync", Comms: []string{"sync"}, Events: 9,
		Dests: []LearnDest{
			dest("140.82.112.5", 443, "tcp", 3), // api.github.com
			dest("2606:50c0::1", 443, "tcp", 1), // api.github.com (AAAA)
			dest("151.101.1.1", 443, "tcp", 1),  // a.example.com
			dest("151.101.1.2", 443, "tcp", 1),  // b.example.com
			dest("203.0.113.8", 53, "udp", 1),   // x.co.uk and y.co.uk: never *.co.uk
			dest("203.0.113.8", 53, "tcp", 1),   //
			dest("192.0.2.44", 22, "tcp", 1),    // no lookup: by address
		},
		Lookups: []LearnLookup{look("api.github.com", "140.82.112.5"), look("api.github.com", "2606:50c0::1"),
			look("a.example.com", "151.101.1.1"), look("b.example.com", "151.101.1.2"),
			look("x.co.uk", "203.0.113.8"), look("y.co.uk", "203.0.113.8"),
			look("unused.example.org", "198.51.100.1")},
	}}}
	for _, tc := range []struct {
		fold bool
		want []string
	}{
		{false, []string{"a.example.com port 443 tcp", "api.github.com port 443 tcp", "b.example.com port 443 tcp",
			"x.co.uk port 53", "y.co.uk port 53", "192.0.2.44/32 port 22 tcp"}},
		{true, []string{"*.example.com port 443 tcp", "api.github.com port 443 tcp",
			"x.co.uk port 53", "y.co.uk port 53", "192.0.2.44/32 port 22 tcp"}},
	} {
		data, p, err := LearnedPolicy(rep, LearnOptions{FoldNames: tc.fold})
		if err != nil {
			t.Fatal(err)
		}
		v := ViewPolicy(p)
		if len(v.Rules) != 1 || v.Rules[0].Action != "deny" || !reflect.DeepEqual(v.Rules[0].Allow, tc.want) {
			t.Errorf("fold %v: rules %+v\nwant allow %q\n%s", tc.fold, v.Rules, tc.want, data)
		}
		for _, s := range []string{"# 4 attempts to 2 addresses it looked up", "allowed by name"} {
			if !strings.Contains(string(data), s) {
				t.Errorf("fold %v: output lacks %q:\n%s", tc.fold, s, data)
			}
		}
	}
}

// TestLearnNamesOnlyOwnLookups: a name another program looked up does not
// name this program's destination.
func TestLearnNamesOnlyOwnLookups(t *testing.T) {
	rep := LearnReport{Previous: PolicyView{Default: "allow", Mode: "enforce"}, Observed: []LearnExe{
		{Exe: "/opt/a", Events: 1, Dests: []LearnDest{dest("198.51.100.9", 443, "tcp", 1)}},
		{Exe: "/opt/b", Events: 1, Dests: []LearnDest{dest("198.51.100.9", 443, "tcp", 1)},
			Lookups: []LearnLookup{look("b.example.net", "198.51.100.9")}},
	}}
	_, p, err := LearnedPolicy(rep, LearnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v := ViewPolicy(p)
	if got := v.Rules[0].Allow; !reflect.DeepEqual(got, []string{"198.51.100.9/32 port 443 tcp"}) {
		t.Errorf("a: %q", got)
	}
	if got := v.Rules[1].Allow; !reflect.DeepEqual(got, []string{"b.example.net port 443 tcp"}) {
		t.Errorf("b: %q", got)
	}
}
