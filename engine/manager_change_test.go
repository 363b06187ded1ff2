package engine_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/exewall/exewall/engine"
)

// changeFixture is a policy file of n exe rules, with comments, whose
// executables resolve by path (1..n, and n+1 for one more).
func changeFixture(t *testing.T, n int) (*fixture, pathResolver) {
	t.Helper()
	res := pathResolver{}
	var b strings.Builder
	b.WriteString("# the team's policy\ndefault: allow\nrules:\n")
	for i := range n + 1 {
		exe := fmt.Sprintf("/opt/app%d", i)
		res[exe] = uint64(i + 1)
		if i < n {
			fmt.Fprintf(&b, "  # rule %d, kept by hand\n  - name: app%d\n    exe: %s # the app\n    action: deny\n", i, i, exe)
		}
	}
	f := newFixture(t, b.String(), func(c *engine.ManagerConfig) { c.Resolver = res })
	return f, res
}

// TestChangeChecksAsWholePolicy: an edit that changes a few rules of a
// large policy is refused exactly as the whole policy would be (same
// message), and what it leaves stays: the file, its comments, the rules.
func TestChangeChecksAsWholePolicy(t *testing.T) {
	f, res := changeFixture(t, 40)
	before, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		what string
		edit func(p *engine.Policy)
	}{
		{"rule renamed to another's name", func(p *engine.Policy) { p.Rules[20].Name = "app3" }},
		{"appended rule with a taken name", func(p *engine.Policy) {
			p.Rules = append(p.Rules, engine.Rule{Name: "app39", Selector: engine.Selector{Exe: "/opt/app40"}, Action: engine.ActionDeny})
		}},
		{"rule replaced in place selecting another's exe", func(p *engine.Policy) { p.Rules[5].Exe = "/opt/app30" }},
		{"same exe spelled differently", func(p *engine.Policy) { p.Rules[30].Exe = "/opt//app5" }},
		{"appended rule selecting an exe already named", func(p *engine.Policy) {
			p.Rules = append(p.Rules, engine.Rule{Name: "new", Selector: engine.Selector{Exe: "/opt/app0"}, Action: engine.ActionDeny})
		}},
		{"rule removed and one appended with a bad name", func(p *engine.Policy) {
			p.Rules = append(p.Rules[:2], p.Rules[3:]...)
			p.Rules = append(p.Rules, engine.Rule{Name: "-x", Selector: engine.Selector{Exe: "/opt/app40"}, Action: engine.ActionDeny})
		}},
		{"rule with a relative exe", func(p *engine.Policy) { p.Rules[7].Exe = "opt/app7" }},
		{"rule with two selectors", func(p *engine.Policy) { p.Rules[8].User = "root" }},
		{"unknown action", func(p *engine.Policy) { p.Rules[9].Action = engine.Action(42) }},
		{"bad destination", func(p *engine.Policy) {
			p.Rules[10].Allow = []engine.Dest{{PortLo: 9, PortHi: 1}}
		}},
	}
	for _, c := range bad {
		want := f.m.Policy()
		c.edit(want)
		wantErr := engine.Validate(want, res)
		if wantErr == nil {
			t.Fatalf("%s: the whole policy passes; the case is wrong", c.what)
		}
		_, err := f.m.Update(ctx, func(p *engine.Policy) error { c.edit(p); return nil })
		if err == nil || err.Error() != wantErr.Error() {
			t.Errorf("%s: change refused with %v, the whole policy with %v", c.what, err, wantErr)
		}
	}
	after, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Fatalf("refused changes touched the file:\n%s", after)
	}
	f.agree(t)
}

// TestChangeKeepsCommentsAndOrder: changes through the CLI's calls (one
// rule replaced, one removed, one added) edit the file in place: every
// other line, comments included, stays where it was.
func TestChangeKeepsCommentsAndOrder(t *testing.T) {
	f, _ := changeFixture(t, 40)
	if _, err := f.m.AddRule(ctx, engine.Rule{Selector: engine.Selector{Exe: "/opt/app7"}, Action: engine.ActionAllow}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.RemoveRule(ctx, "app20"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.AddRule(ctx, engine.Rule{Name: "late", Selector: engine.Selector{Exe: "/opt/app40"}, Action: engine.ActionLocalOnly}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	got := string(data)
	for _, want := range []string{
		"# the team's policy\ndefault: allow\nrules:\n  # rule 0, kept by hand\n  - name: app0\n",
		"  # rule 7, kept by hand\n  - name: app7\n    exe: /opt/app7 # the app\n    action: allow\n  # rule 8, kept by hand\n",
		"    exe: /opt/app19 # the app\n    action: deny\n  # rule 21, kept by hand\n",
		"    exe: /opt/app39 # the app\n    action: deny\n  - name: late\n    exe: /opt/app40\n    action: local-only\n",
	} {
		if !strings.Contains(got, want) {
			t.Fatalf("file lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "app20") {
		t.Fatalf("removed rule still in the file:\n%s", got)
	}
	f.agree(t)
}

// TestChangeRechecksUnchangedExes: a change of one rule still resolves
// every exe, so two rules whose files became one since the policy was put
// in force are refused, as a whole policy would be.
func TestChangeRechecksUnchangedExes(t *testing.T) {
	f, res := changeFixture(t, 10)
	res["/opt/app6"] = res["/opt/app2"] // a hard link now
	_, err := f.m.AddRule(ctx, engine.Rule{Selector: engine.Selector{Exe: "/opt/app9"}, Action: engine.ActionAllow})
	if err == nil || !strings.Contains(err.Error(), `rules "app2" and "app6" name the same executable`) {
		t.Fatalf("change with two rules on one file: %v", err)
	}
}
