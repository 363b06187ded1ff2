package engine

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// bigPolicyText is a policy file of n rules with comments, destination
// lists, every selector kind and keys after the rules list.
func bigPolicyText(n int) string {
	var b strings.Builder
	b.WriteString("# head\ndefault: allow\nrules:\n")
	for i := range n {
		if i%7 == 0 {
			fmt.Fprintf(&b, "  # rule %d\n\n", i)
		}
		fmt.Fprintf(&b, "  - name: r%06d\n", i)
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "    exe: /opt/decoys/d%06d\n", i)
		case 1:
			fmt.Fprintf(&b, "    cgroup: /exewall/c%06d\n", i)
		case 2:
			fmt.Fprintf(&b, "    user: \"%d\"\n", 20000+i)
		default:
			fmt.Fprintf(&b, "    group: \"%d\"\n", 20000+i)
		}
		fmt.Fprintf(&b, "    action: %s\n", []string{"deny", "allow", "local-only"}[i%3])
		if i%2 == 0 {
			fmt.Fprintf(&b, "    deny:\n      - 10.%d.%d.0/24 port 443 tcp\n      - 2001:db8::/32 port 53\n", (i>>8)&255, i&255)
		}
		if i%5 == 0 {
			b.WriteString("    audit: true  # watch it\n")
		}
	}
	b.WriteString("# tail\nmode: audit\ndefault_inbound: deny\n")
	return b.String()
}

// TestParseItemsIsParseTree: a large file read rule by rule gives exactly
// the policy its whole YAML tree gives, lines included; and a file it
// cannot delimit, or that holds an error anywhere, is left to the tree.
func TestParseItemsIsParseTree(t *testing.T) {
	text := bigPolicyText(2000)
	byItems, ok := parseItems([]byte(text))
	if !ok {
		t.Fatal("a large plain policy file was not read rule by rule")
	}
	byTree, err := parseTree([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(byItems, byTree) {
		for i := range byTree.Rules {
			if !reflect.DeepEqual(byItems.Rules[i], byTree.Rules[i]) {
				t.Fatalf("rule %d: by items %+v, by the tree %+v", i, byItems.Rules[i], byTree.Rules[i])
			}
		}
		t.Fatalf("by items %+v, by the tree %+v", ViewPolicy(byItems), ViewPolicy(byTree))
	}
	if byTree.Rules[4].Line != 25 || byTree.Rules[4].Deny[0].Line != 29 {
		t.Errorf("rule 4 at line %d, its entry at %d", byTree.Rules[4].Line, byTree.Rules[4].Deny[0].Line)
	}
	for _, tc := range []struct{ name, from, to string }{
		{"an unknown field in a rule", "    action: allow\n", "    action: allow\n    colour: red\n"},
		{"a duplicate name", "  - name: r001500\n", "  - name: r000001\n"},
		{"an alias", "    action: deny\n", "    action: *a\n"},
		{"an error after the rules", "mode: audit\n", "mode: loud\n"},
		{"a flow list", "rules:\n", "rules: []\nx:\n"},
	} {
		bad := strings.Replace(text, tc.from, tc.to, 1)
		if bad == text {
			t.Fatalf("%s: nothing replaced", tc.name)
		}
		if _, ok := parseItems([]byte(bad)); ok {
			t.Errorf("%s: read rule by rule", tc.name)
		}
		_, itemsErr := Parse([]byte(bad))
		_, treeErr := parseTree([]byte(bad))
		if fmt.Sprint(itemsErr) != fmt.Sprint(treeErr) || treeErr == nil && tc.name != "a flow list" {
			t.Errorf("%s: Parse says %v, the tree %v", tc.name, itemsErr, treeErr)
		}
	}
}
