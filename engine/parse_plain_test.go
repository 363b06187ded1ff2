package engine

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// plainValues are values for the generator below: what plainItems reads
// and what it must leave to yaml.v3 (other types, indicators, quoting it
// does not read, comments).
var plainValues = []string{
	"r1", "/usr/bin/curl", "/opt/x y", "allow", "deny", "local-only", "true", "false", "True", "FALSE", "yes", "no", "on",
	"null", "Null", "~", "1000", "0123", "0x1f", "1_000", "1.5", "1e3", ".inf", "-.inf", ".nan", "2001-12-14", "2001-12-14 1:2:3",
	"10.0.0.0/24 port 443 tcp", "10.0.0.1 port 53 udp", "::1/128", "::", ":x", "a: b", "a:b", "a:", "a #c", "a#b", "a  # c",
	"-x", "- x", "-", "?x", "'q'", "'it''s'", "'a' # c", "'a'#c", "'a'x", `"d"`, `"e\n"`, `"a'b"`, `'a"b'`, "'*.example.com'",
	"*.x", "&a x", "*a", "!!str x", "!x", "<<", "x,y", "[a]", "{a: b}", "|", ">", "%x", "@x", "`x", "é", "a\tb", "a ",
	"'unterminated", `"`, "''", `""`, "a'b", `a"b`, "a\\b", "#", "=x", "<x", "a b c", ".", "..", "...", "---", "0", "-0",
	"+1", "0b101", "0o17", "12:30", "1:2:3", "1.2.3.4", "2001:db8::/32 port 53", "*.example.com port 443 tcp",
}

var plainKeys = []string{"name", "exe", "cgroup", "user", "group", "action", "audit", "allow", "deny", "colour", "Name", "a b", "", "-"}

// randomItems writes 1-3 rules-list items at column ind, mostly of the
// plain form, sometimes not.
func randomItems(r *rand.Rand, ind int) string {
	var b strings.Builder
	pad := func(n int) string { return strings.Repeat(" ", max(n, 0)) }
	pick := func(l []string) string { return l[r.IntN(len(l))] }
	value := func() string { // more often of the values plainItems reads
		if r.IntN(2) == 0 {
			return pick([]string{"r1", "/usr/bin/curl", "deny", "local-only", "true", "1000", "10.0.0.0/24 port 443 tcp", "::1/128", "'q'", `"d"`})
		}
		return pick(plainValues)
	}
	for range 1 + r.IntN(3) {
		if r.IntN(6) == 0 {
			fmt.Fprintf(&b, "%s# a comment\n", pad(r.IntN(ind+3)))
		}
		if r.IntN(8) == 0 {
			b.WriteString("\n")
		}
		dashGap := 1
		if r.IntN(10) == 0 {
			dashGap = 2 + r.IntN(2)
		}
		keyCol := ind + 1 + dashGap
		for k := range 1 + r.IntN(5) {
			key := pick(plainKeys)
			if r.IntN(3) > 0 {
				key = plainKeys[r.IntN(9)]
			}
			lead := pad(keyCol)
			if k == 0 {
				lead = pad(ind) + "-" + pad(dashGap)
			} else if r.IntN(25) == 0 {
				lead = pad(keyCol + r.IntN(3) - 1)
			}
			if r.IntN(3) == 0 { // a list
				tail := ""
				if r.IntN(8) == 0 {
					tail = "  # list"
				}
				if r.IntN(10) == 0 {
					tail = " " + value()
				}
				fmt.Fprintf(&b, "%s%s:%s\n", lead, key, tail)
				listCol := keyCol + []int{0, 2, 2, 4, 1, -1}[r.IntN(6)]
				for range r.IntN(4) {
					col := listCol
					if r.IntN(20) == 0 {
						col += r.IntN(3) - 1
					}
					if r.IntN(10) == 0 {
						fmt.Fprintf(&b, "%s# in the list\n", pad(r.IntN(keyCol+4)))
					}
					fmt.Fprintf(&b, "%s-%s%s\n", pad(col), pad(1+r.IntN(2)/2), value())
				}
				continue
			}
			sep := " "
			switch r.IntN(20) {
			case 0:
				sep = ""
			case 1:
				sep = "   "
			}
			fmt.Fprintf(&b, "%s%s:%s%s\n", lead, key, sep, value())
			if r.IntN(30) == 0 { // a continuation line
				fmt.Fprintf(&b, "%s%s\n", pad(keyCol+2), pick(plainValues))
			}
		}
	}
	return b.String()
}

// sameTree compares what parse reads of two nodes: kind, type, value,
// quoting and position. An empty value's position is not compared (see
// plainItem.node).
func sameTree(a, b *yaml.Node) string {
	if a.Kind != b.Kind || a.ShortTag() != b.ShortTag() || a.Value != b.Value ||
		a.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != b.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) {
		return fmt.Sprintf("%v %s %q (style %v) at %d:%d, yaml.v3 %v %s %q (style %v) at %d:%d",
			a.Kind, a.ShortTag(), a.Value, a.Style, a.Line, a.Column, b.Kind, b.ShortTag(), b.Value, b.Style, b.Line, b.Column)
	}
	if b.ShortTag() != "!!null" && (a.Line != b.Line || a.Column != b.Column) {
		return fmt.Sprintf("%q at %d:%d, yaml.v3 at %d:%d", a.Value, a.Line, a.Column, b.Line, b.Column)
	}
	if len(a.Content) != len(b.Content) {
		return fmt.Sprintf("%d children at %d:%d, yaml.v3 %d", len(a.Content), a.Line, a.Column, len(b.Content))
	}
	for i := range a.Content {
		if d := sameTree(a.Content[i], b.Content[i]); d != "" {
			return d
		}
	}
	return ""
}

// checkPlainItems fails when plainItems reads text (starting on line 7)
// otherwise than yaml.v3; it reports whether plainItems read it.
func checkPlainItems(t *testing.T, text string) bool {
	t.Helper()
	var trees []*yaml.Node
	n, ok := plainItems([]byte(text), 7, func(k int, item *yaml.Node) bool {
		trees = append(trees, deepCopy(item))
		return true
	})
	if !ok {
		return false
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("plainItems read %d items of text yaml.v3 refuses (%v):\n%s", n, err, text)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.SequenceNode || len(doc.Content[0].Content) != n {
		t.Fatalf("plainItems read %d items, yaml.v3 something else:\n%s", n, text)
	}
	for k, item := range doc.Content[0].Content {
		moveLines(item, 6)
		if d := sameTree(trees[k], item); d != "" {
			t.Fatalf("item %d: %s; text:\n%s", k, d, text)
		}
		got, _, gotErr := parseRule(trees[k])
		want, _, wantErr := parseRule(item)
		if !reflect.DeepEqual(got, want) || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("item %d: parseRule gives %+v, %v from plainItems' nodes, %+v, %v from yaml.v3's; text:\n%s", k, got, gotErr, want, wantErr, text)
		}
	}
	return true
}

func deepCopy(n *yaml.Node) *yaml.Node {
	c := *n
	c.Content = nil
	for _, ch := range n.Content {
		c.Content = append(c.Content, deepCopy(ch))
	}
	return &c
}

// TestPlainItemsAreYAMLs: whatever plainItems reads, yaml.v3 reads the
// same way, node for node, and parseRule makes the same rule of both; over
// random items, most of them plain, many not.
func TestPlainItemsAreYAMLs(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	read := 0
	const cases = 30000
	for range cases {
		if checkPlainItems(t, randomItems(r, []int{0, 2, 4}[r.IntN(3)])) {
			read++
		}
	}
	// A generator whose texts are all refused would test nothing.
	if read < cases/20 {
		t.Fatalf("plainItems read %d of %d random texts", read, cases)
	}
	t.Logf("plainItems read %d of %d random texts", read, cases)
}

// TestPlainItemsReadWhatExewallWrites: the policy files exewall writes
// (Marshal) and the benchmark's are read without yaml.v3; a plain value
// yaml.v3 would take for another type is left to it.
func TestPlainItemsReadWhatExewallWrites(t *testing.T) {
	p, err := Parse([]byte(bigPolicyText(500)))
	if err != nil {
		t.Fatal(err)
	}
	p.Rules[3].Allow = []Dest{{Name: "*.example.com"}, {Name: "example.org", PortLo: 443, PortHi: 443, Proto: ProtoTCP}}
	data, err := Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	bench := "rules:\n  - name: r000000\n    exe: /tmp/exewall-bench-x/decoys/d000000\n    action: deny\n    deny:\n      - 10.0.0.0/24 port 443 tcp\n"
	for name, text := range map[string]string{"Marshal": string(data), "the benchmark's": bench} {
		items, _, ok := scanRules([]byte(text), 0)
		if !ok {
			t.Fatalf("%s: scanRules does not delimit the rules", name)
		}
		body := text[items[0].start:items[len(items)-1].end]
		if !checkPlainItems(t, body) {
			t.Errorf("%s policy file is left to yaml.v3", name)
		}
	}
	for _, text := range []string{
		"- name: a\n  user: 1.5\n  action: deny\n",
		"- name: a\n  exe: /x\n  action: deny\n  audit: yes\n",
	} {
		var rule Rule
		_, ok := plainItems([]byte(text), 1, func(k int, item *yaml.Node) bool {
			var err error
			rule, _, err = parseRule(item)
			return err == nil
		})
		if ok {
			t.Errorf("plainItems took %q for rule %+v", text, rule)
		}
	}
}

func FuzzPlainItems(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 50 {
		f.Add(randomItems(r, 2))
	}
	f.Fuzz(func(t *testing.T, text string) {
		checkPlainItems(t, text)
	})
}

// TestPlainStringIsYAMLs: a value plainString calls a string, yaml.v3
// resolves to a string; over the generator's values and random short ones
// of the characters numbers, timestamps and keywords are made of.
func TestPlainStringIsYAMLs(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const alphabet = "0123456789+-._:/ eExXoObBtTfFnNyY~<aZ"
	values := append([]string{}, plainValues...)
	for range 200000 {
		b := make([]byte, 1+r.IntN(12))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		values = append(values, string(b))
	}
	for _, v := range values {
		n := yaml.Node{Kind: yaml.ScalarNode, Value: v}
		if plainString(v) && n.ShortTag() != "!!str" {
			t.Errorf("plainString(%q), but yaml.v3 resolves it to %s", v, n.ShortTag())
		}
	}
}
