package engine

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// TestEditPolicyFileFromEditsOnlyChangedRules: one rule changed, added or
// removed is edited in the text itself; every other line, comment and
// blank line stays byte for byte, and the result says the new policy.
func TestEditPolicyFileFromEditsOnlyChangedRules(t *testing.T) {
	old := mustParse(t, commented)
	cases := map[string]func(p *Policy){
		"change action": func(p *Policy) { p.Rules[1].Action = ActionAllow },
		"add allow": func(p *Policy) {
			p.Rules[0].Allow = []Dest{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), PortLo: 53, PortHi: 53, Proto: ProtoUDP}}
		},
		"remove first":  func(p *Policy) { p.Rules = p.Rules[1:] },
		"remove middle": func(p *Policy) { p.Rules = append(p.Rules[:1], p.Rules[2:]...) },
		"remove last":   func(p *Policy) { p.Rules = p.Rules[:2] },
		"append": func(p *Policy) {
			p.Rules = append(p.Rules, Rule{Name: "new", Selector: Selector{Exe: "/usr/bin/wget"}, Action: ActionDeny})
		},
		"insert first": func(p *Policy) {
			p.Rules = append([]Rule{{Name: "new", Selector: Selector{User: "nobody"}, Action: ActionLocalOnly, Audit: true}}, p.Rules...)
		},
		"audit on backup": func(p *Policy) { p.Rules[1].Audit = true },
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			p := old.Clone()
			change(p)
			out, ok := editRulesText([]byte(commented), old, p)
			if !ok {
				t.Fatal("not edited as text")
			}
			back := mustParse(t, string(out))
			if !reflect.DeepEqual(ViewPolicy(back), ViewPolicy(p)) {
				t.Fatalf("edited file says %+v, want %+v\n%s", ViewPolicy(back), ViewPolicy(p), out)
			}
			// Every comment of a rule that stays is still there.
			for _, c := range []string{"# top comment", "# the default", "# mode comment"} {
				if !strings.Contains(string(out), c) {
					t.Errorf("%q lost:\n%s", c, out)
				}
			}
			for _, r := range p.Rules {
				if r.Name == "backup" && !strings.Contains(string(out), "# the office") {
					t.Errorf("the comment inside a changed rule was lost:\n%s", out)
				}
			}
		})
	}
	// What the tree editor does not leave to the text editor.
	for name, change := range map[string]func(p *Policy){
		"default":  func(p *Policy) { p.Default = ActionDeny },
		"reorder":  func(p *Policy) { p.Rules[0], p.Rules[1] = p.Rules[1], p.Rules[0] },
		"no rules": func(p *Policy) { p.Rules = nil },
	} {
		p := old.Clone()
		change(p)
		if _, ok := editRulesText([]byte(commented), old, p); ok {
			t.Errorf("%s: edited as text", name)
		}
		edit(t, commented, p) // the tree editor still does it
	}
	// Settings beside the rules are not the text editor's either.
	for name, change := range map[string]func(p *Policy){
		"default_inbound": func(p *Policy) { p.DefaultInbound, p.InboundSet = ActionDeny, true },
		"resolvers":       func(p *Policy) { p.Resolvers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.53:53")} },
	} {
		p := old.Clone()
		change(p)
		if _, ok := editRulesText([]byte(commented), old, p); ok {
			t.Errorf("%s: edited as text", name)
		}
	}
}

// TestEditPolicyFileFromFallsBack: files the scanner is not sure of go
// through the tree editor, and the result is right either way.
func TestEditPolicyFileFromFallsBack(t *testing.T) {
	for _, src := range []string{
		"rules:\n- name: a\n  exe: /bin/a\n  action: deny\n- name: b\n  exe: /bin/b\n  action: deny\n",       // items at column 0
		"rules:\n  - {name: a, exe: /bin/a, action: deny}\n  - name: b\n    exe: /bin/b\n    action: deny\n", // flow item
		"rules:\n  - name: \"a\"\n    exe: /bin/a\n    action: deny\n  - name: b\n    exe: /bin/b\n    action: deny\n",
		"rules:\n  - exe: /bin/a\n    name: a\n    action: deny\n  - name: b\n    exe: /bin/b\n    action: deny\nmode: audit\n",
		"rules:\n  - &x\n    name: a\n    exe: /bin/a\n    action: deny\n  - name: b\n    exe: /bin/b\n    action: deny\n",
		"rules:\n  -\n    name: a\n    exe: /bin/a\n    action: deny\n  - name: b   # b\n    exe: /bin/b\n    action: deny\n    deny:\n    - 10.0.0.0/8 port 443\n",
	} {
		old := mustParse(t, src)
		for i := range old.Rules {
			p := old.Clone()
			p.Rules[i].Action = ActionAllow
			p.Rules = append(p.Rules, Rule{Name: fmt.Sprint("n", i), Selector: Selector{Exe: "/bin/n"}, Action: ActionDeny})
			out, _, err := EditPolicyFileFrom([]byte(src), old, p)
			if err != nil {
				t.Fatal(err)
			}
			back := mustParse(t, string(out))
			if !reflect.DeepEqual(ViewPolicy(back), ViewPolicy(p)) {
				t.Fatalf("edited file says %+v, want %+v\n%s", ViewPolicy(back), ViewPolicy(p), out)
			}
		}
	}
}

// TestEditPolicyFileFromNameOrDirectionOnly: an edit that changes only an
// entry's DNS name or its direction is written to the file.
func TestEditPolicyFileFromNameOrDirectionOnly(t *testing.T) {
	for _, tc := range []struct{ before, after string }{
		{"a.example.com port 443 tcp", "b.example.com port 443 tcp"},
		{"10.0.0.0/8 port 22 tcp", "10.0.0.0/8 port 22 tcp in"},
	} {
		src := "default: deny\nmode: enforce\nrules:\n  # kept\n  - name: a\n    exe: /bin/a\n    action: deny\n    allow:\n      - " +
			tc.before + "\n  - name: b\n    exe: /bin/b\n    action: deny\n"
		old := mustParse(t, src)
		p := old.Clone()
		d, err := ParseDest(tc.after)
		if err != nil {
			t.Fatal(err)
		}
		p.Rules[0].Allow = []Dest{d}
		out, _, err := EditPolicyFileFrom([]byte(src), old, p)
		if err != nil {
			t.Fatal(err)
		}
		back := mustParse(t, string(out))
		if !reflect.DeepEqual(ViewPolicy(back), ViewPolicy(p)) {
			t.Errorf("%q -> %q: edited file says %+v, want %+v\n%s", tc.before, tc.after, ViewPolicy(back), ViewPolicy(p), out)
		}
	}
}

// TestEditRulesTextTakesQuotedWildcards: a quoted value holding what YAML
// would read as an alias, anchor or tag elsewhere ('*.example.com', the
// wildcard names every DNS policy has) keeps a file editable as text; the
// same characters outside quotes, or in a quote that does not close on its
// line, leave it to the YAML tree.
func TestEditRulesTextTakesQuotedWildcards(t *testing.T) {
	src := "rules:\n" +
		"  - name: web\n    exe: /usr/bin/curl\n    action: deny\n    allow:\n      - '*.example.com'   # every host below\n      - \"*.example.org port 443 tcp\"\n" +
		"  - name: b\n    exe: '/opt/it''s*/b'\n    action: deny\n"
	old := mustParse(t, src)
	p := old.Clone()
	p.Rules[1].Action = ActionAllow
	out, ok := editRulesText([]byte(src), old, p)
	if !ok {
		t.Fatal("a file with quoted wildcard names was not edited as text")
	}
	if back := mustParse(t, string(out)); !reflect.DeepEqual(ViewPolicy(back), ViewPolicy(p)) {
		t.Fatalf("edited file says %+v, want %+v\n%s", ViewPolicy(back), ViewPolicy(p), out)
	}
	for _, line := range []string{
		"      - *.example.com\n",               // an alias to YAML
		"      - 'a' &x\n",                      // an anchor after a quote
		"      - '*.example.com\n",              // a quote that does not close
		"      - \"*.example.com\\\"\n",         // nor this one (escaped)
		"      - 'a'' *b\n",                     // nor this one (doubled)
		"    exe: !!str /bin/b\n",               // a tag
		"    action: deny   # fine\n    x: |\n", // a block scalar
	} {
		bad := strings.Replace(src, "      - \"*.example.org port 443 tcp\"\n", line, 1)
		if bad == src {
			t.Fatal("nothing replaced")
		}
		if _, _, ok := scanRules([]byte(bad), 2); ok {
			t.Errorf("scanRules delimits a file with %q", line)
		}
	}
}
