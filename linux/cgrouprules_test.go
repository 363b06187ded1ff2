//go:build linux

package linux

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exewall/exewall/engine"
)

// TestDeepestCgroupRuleWins: a process falls under the rule of its deepest
// cgroup that has one, however far below it the process runs, and a rule
// of an outer cgroup covers what no inner rule does. (fill_cache asks
// cgroup_rule, a global function of its own, for it.)
func TestDeepestCgroupRuleWins(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	outer := filepath.Join(cg, "outer")
	inner := filepath.Join(outer, "inner")
	leaf := filepath.Join(inner, "a", "b", "c")
	side := filepath.Join(outer, "side")
	for _, d := range []string{leaf, side} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root, err := cgroupMount()
	if err != nil {
		t.Fatal(err)
	}
	rel := func(p string) string { return strings.TrimPrefix(p, root) }
	b := newTestBackend(t, cg)
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "outer", Selector: engine.Selector{Cgroup: rel(outer)}, Action: engine.ActionDeny},
		{Name: "inner", Selector: engine.Selector{Cgroup: rel(inner)}, Action: engine.ActionAllow},
	}})
	exe := clientCopy(t, t.TempDir(), "plain")
	for _, c := range []struct {
		name, cgroup string
		rule         string // the rule that denies, "" when allowed
	}{
		{"the attach point (the default)", cg, ""},
		{"outer", outer, "outer"},
		{"outer/side (no rule of its own)", side, "outer"},
		{"outer/inner", inner, ""},
		{"outer/inner/a/b/c (no rule of its own)", leaf, ""},
	} {
		pid, out := runClient(t, exe, c.cgroup, loopbackTCP(port))
		if got := out[0].denied(); got != (c.rule != "") {
			t.Errorf("%s: denied=%v, want %v (%+v)", c.name, got, c.rule != "", out[0])
			continue
		}
		if c.rule != "" {
			v := waitViolation(t, b.Backend, func(v engine.Violation) bool { return v.PID == uint32(pid) })
			if v.Rule != c.rule || v.Dport != port {
				t.Errorf("%s: event %+v, want rule %q port %d", c.name, v, c.rule, port)
			}
		}
	}
}
