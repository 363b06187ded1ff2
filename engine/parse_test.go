package engine

import (
	"errors"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func TestParseEmpty(t *testing.T) {
	for _, in := range []string{"", "\n", "# only a comment\n", "---\n", "~\n", "null\n"} {
		p, err := Parse([]byte(in))
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		if !reflect.DeepEqual(p, DefaultPolicy()) {
			t.Errorf("Parse(%q) = %+v, want DefaultPolicy()", in, p)
		}
	}
}

func TestParseFull(t *testing.T) {
	in := `default: local-only
mode: audit
rules:
  - name: curl
    exe: /usr/bin/curl
    action: deny
    audit: true
    allow:
      - 10.0.0.1
      - ::ffff:192.0.2.0/120 port 80-90 udp
    deny:
      - 2001:db8::1/32 port 22 tcp
  - name: web
    cgroup: //system.slice//nginx.service/
    action: allow
  - name: "1000"
    user: 1000
    action: local-only
  - name: g
    group: nogroup
    action: deny
    allow: []
    deny:
`
	p, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := &Policy{Default: ActionLocalOnly, Mode: ModeAudit, Rules: []Rule{
		{Name: "curl", Selector: Selector{Exe: "/usr/bin/curl"}, Action: ActionDeny, Audit: true, Line: 4,
			Allow: []Dest{
				{Prefix: netip.MustParsePrefix("10.0.0.1/32"), Line: 9},
				{Prefix: netip.MustParsePrefix("192.0.2.0/24"), PortLo: 80, PortHi: 90, Proto: ProtoUDP, Line: 10},
			},
			Deny: []Dest{{Prefix: netip.MustParsePrefix("2001:db8::/32"), PortLo: 22, PortHi: 22, Proto: ProtoTCP, Line: 12}}},
		{Name: "web", Selector: Selector{Cgroup: "/system.slice/nginx.service"}, Action: ActionAllow, Line: 13},
		{Name: "1000", Selector: Selector{User: "1000"}, Action: ActionLocalOnly, Line: 16},
		{Name: "g", Selector: Selector{Group: "nogroup"}, Action: ActionDeny, Line: 19},
	}}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", p, want)
	}
}

// TestParseRefusals: every refusal names the line of the node at fault.
func TestParseRefusals(t *testing.T) {
	const head = "rules:\n  - name: a\n    exe: /bin/a\n    action: deny\n" // rule a at lines 2-4
	for _, tc := range []struct {
		name, in string
		line     int
		phrase   string
	}{
		{"yaml syntax", "rules: [\n", 1, "invalid yaml"},
		{"bad indent", "default: allow\n  mode: audit\n", 2, "invalid yaml"},
		{"two documents", "default: allow\n---\nmode: audit\n", 2, "second yaml document"},
		{"top not mapping", "- a\n- b\n", 1, "policy must be a mapping"},
		{"top scalar", "hello\n", 1, "policy must be a mapping"},
		{"unknown top field", "default: allow\ndefualt: deny\n", 2, `unknown field "defualt"`},
		{"duplicate top key", "mode: audit\nmode: enforce\n", 2, `field "mode" given twice`},
		{"bad default", "default: block\n", 1, `unknown action "block"`},
		{"default null", "default:\n", 1, "default has no value"},
		{"default list", "default: [allow]\n", 1, "want a string, got a list"},
		{"bad mode", "mode: learn\n", 1, `unknown mode "learn"`},
		{"rules mapping", "rules:\n  name: a\n", 2, "rules: want a list, got a mapping"},
		{"rules scalar", "rules: none\n", 1, "want a list"},
		{"rule scalar", "rules:\n  - curl\n", 2, "rule must be a mapping"},
		{"unknown rule field", head + "    action2: deny\n", 5, `unknown field "action2" in the rule`},
		{"unknown rule field deep", head + "  - name: b\n    exe: /bin/b\n    action: deny\n    ports: [1]\n", 8, `unknown field "ports"`},
		{"duplicate rule key", head + "    action: allow\n", 5, `field "action" given twice`},
		{"missing name", "rules:\n  - exe: /bin/a\n    action: deny\n", 2, "rule has no name"},
		{"empty name", "rules:\n  - name: ''\n    exe: /bin/a\n    action: deny\n", 2, "rule has no name"},
		{"null name", "rules:\n  - name:\n    exe: /bin/a\n    action: deny\n", 2, "name has no value"},
		{"bad name chars", "rules:\n  - exe: /bin/a\n    name: my rule\n    action: deny\n", 3, `rule name "my rule"`},
		{"name leading dash", "rules:\n  - name: -a\n    exe: /bin/a\n    action: deny\n", 2, "not starting with"},
		{"name too long", "rules:\n  - name: " + strings.Repeat("x", 65) + "\n    exe: /bin/a\n    action: deny\n", 2, "longer than 64"},
		{"name bool", "rules:\n  - name: true\n    exe: /bin/a\n    action: deny\n", 2, "got a boolean (quote it)"},
		{"duplicate name", head + "  - name: a\n    exe: /bin/b\n    action: deny\n", 5, `duplicate rule name "a" (first at line 2)`},
		{"missing action", "rules:\n  - name: a\n    exe: /bin/a\n", 2, `rule "a" has no action`},
		{"bad action", "rules:\n  - name: a\n    exe: /bin/a\n    action: drop\n", 4, `unknown action "drop"`},
		{"missing selector", "rules:\n  - name: a\n    action: deny\n", 2, "selects nothing"},
		{"two selectors", "rules:\n  - name: a\n    exe: /bin/a\n    action: deny\n    user: root\n", 5, "has both exe and user"},
		{"relative exe", "rules:\n  - name: a\n    exe: bin/a\n    action: deny\n", 3, "not an absolute path"},
		{"exe with nul", "rules:\n  - name: a\n    exe: \"/bin/a\\0\"\n    action: deny\n", 3, "NUL"},
		{"same exe twice", head + "  - name: b\n    exe: /bin//a\n    action: deny\n", 6, `rules "a" and "b" name the same executable`},
		{"relative cgroup", "rules:\n  - name: a\n    cgroup: system.slice\n    action: deny\n", 3, "must start with /"},
		{"cgroup dotdot", "rules:\n  - name: a\n    cgroup: /a/../b\n    action: deny\n", 3, "must not contain"},
		{"duplicate cgroup", "rules:\n  - name: a\n    cgroup: /x/y\n    action: deny\n  - name: b\n    action: deny\n    cgroup: /x//y/\n", 7, "same cgroup /x/y"},
		{"duplicate user", "rules:\n  - name: a\n    user: bob\n    action: deny\n  - name: b\n    user: bob\n    action: deny\n", 6, "same user bob"},
		{"duplicate group", "rules:\n  - name: a\n    group: ci\n    action: deny\n  - name: b\n    group: ci\n    action: deny\n", 6, "same group ci"},
		{"audit string", head + "    audit: yes\n", 5, "audit: want true or false"},
		{"audit null", head + "    audit:\n", 5, "audit: want true or false"},
		{"allow scalar", head + "    allow: 10.0.0.0/8\n", 5, "allow: want a list"},
		{"allow mapping entry", head + "    allow:\n      - {cidr: 10.0.0.0/8}\n", 6, "want a string, got a mapping"},
		{"allow null entry", head + "    allow:\n      -\n", 6, "has no value"},
		{"bad cidr", head + "    allow:\n      - 10.0.0.0/8\n      - 10.0.0.0/33\n", 7, "prefix length out of range"},
		{"bad address", head + "    deny:\n      - 10.0.0.300\n", 6, "is not an IP address"},
		{"bad name", head + "    deny:\n      - foo.*.example.com\n", 6, "wildcard may only be"},
		{"bad default_inbound", "default_inbound: open\n", 1, "default_inbound: unknown action"},
		{"bad resolver", "resolvers: [ns.example.com]\n", 1, "not an IP address"},
		{"port 0", head + "    allow:\n      - 10.0.0.0/8 port 0\n", 6, "out of range"},
		{"port too big", head + "    allow:\n      - 10.0.0.0/8 port 65536\n", 6, "out of range"},
		{"port backwards", head + "    allow:\n      - 10.0.0.0/8 port 90-80\n", 6, "backwards"},
		{"bad proto", head + "    allow:\n      - 10.0.0.0/8 port 80 sctp\n", 6, `unexpected "sctp"`},
		{"alias", "rules:\n  - name: a\n    exe: /bin/a\n    action: deny\n    allow: &l\n      - 10.0.0.0/8\n    deny: *l\n", 7, "aliases are not supported"},
		{"merge key", "rules:\n  - name: a\n    <<: {exe: /bin/a}\n    action: deny\n", 3, "merge keys"},
		{"custom tag", "default: !act allow\n", 1, "unsupported yaml tag !act"},
		{"binary", "rules:\n  - name: !!binary YQ==\n", 2, "unsupported yaml tag !!binary"},
		{"non-string key", "? [a]\n: b\n", 1, "field names must be plain strings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.in))
			if err == nil {
				t.Fatalf("Parse accepted %q: %+v", tc.in, p)
			}
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is %T, want *PolicyError", err, err)
			}
			if pe.Line != tc.line || !strings.Contains(pe.Msg, tc.phrase) {
				t.Errorf("got %q, want line %d and %q", err, tc.line, tc.phrase)
			}
		})
	}
}

func TestPolicyErrorString(t *testing.T) {
	if got := (&PolicyError{Line: 7, Msg: "x"}).Error(); got != "line 7: x" {
		t.Errorf("got %q", got)
	}
	if got := (&PolicyError{Msg: "x"}).Error(); got != "x" {
		t.Errorf("got %q", got)
	}
}

func TestParseExample(t *testing.T) {
	data, err := os.ReadFile("../examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if p.Default != ActionAllow || p.Mode != ModeEnforce || len(p.Rules) != 6 {
		t.Fatalf("unexpected policy %+v", p)
	}
	backup := p.RuleByName("backup")
	if backup == nil || backup.Action != ActionDeny || len(backup.Allow) != 2 || backup.Allow[0].String() != "203.0.113.0/24 port 443 tcp" {
		t.Errorf("backup rule = %+v", backup)
	}
	if web := p.RuleByName("web"); web == nil || web.Cgroup != "/system.slice/nginx.service" {
		t.Errorf("web rule = %+v", web)
	}
	roundTrip(t, p)
	if runtime.GOOS == "linux" {
		// nobody and nogroup exist on Debian; the exes may be missing.
		if err := Validate(p, StatResolver{}); err != nil {
			t.Errorf("Validate(example): %v", err)
		}
	}
}

// TestPolicyEqual: Equal is a DeepEqual of clones (nil and empty lists
// alike) that allocates nothing.
func TestPolicyEqual(t *testing.T) {
	base := func() *Policy {
		return &Policy{Default: ActionDeny, Rules: []Rule{
			{Name: "a", Selector: Selector{Exe: "/usr/bin/curl"}, Action: ActionAllow, Line: 3,
				Allow: []Dest{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), PortLo: 443, PortHi: 443}}},
			{Name: "b", Selector: Selector{User: "nobody"}, Action: ActionDeny, Deny: []Dest{}},
		}}
	}
	if p := base(); !p.Equal(base()) || !p.Equal(p.Clone()) || !p.Equal(p) {
		t.Fatal("a policy differs from its copy")
	}
	if !(&Policy{}).Equal(&Policy{Rules: []Rule{}, Resolvers: []netip.AddrPort{}}) {
		t.Fatal("nil and empty lists differ")
	}
	for name, change := range map[string]func(*Policy){
		"default":         func(p *Policy) { p.Default = ActionAllow },
		"inbound set":     func(p *Policy) { p.InboundSet = true },
		"resolver":        func(p *Policy) { p.Resolvers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")} },
		"rule dropped":    func(p *Policy) { p.Rules = p.Rules[:1] },
		"line":            func(p *Policy) { p.Rules[0].Line++ },
		"audit":           func(p *Policy) { p.Rules[1].Audit = true },
		"selector":        func(p *Policy) { p.Rules[1].User = "root" },
		"entry port":      func(p *Policy) { p.Rules[0].Allow[0].PortHi = 444 },
		"entry moved":     func(p *Policy) { p.Rules[0].Deny, p.Rules[0].Allow = p.Rules[0].Allow, nil },
		"entry direction": func(p *Policy) { p.Rules[0].Allow[0].Dir = DirIn },
	} {
		p := base()
		change(p)
		if p.Equal(base()) || base().Equal(p) {
			t.Errorf("%s: the changed policy is Equal to the first", name)
		}
	}
	p, q := base(), base()
	if n := testing.AllocsPerRun(10, func() { p.Equal(q) }); n != 0 {
		t.Errorf("Equal made %.0f allocations", n)
	}
}
