package engine

import (
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// withoutLines drops what only says where a policy was read from, so a
// round trip through Marshal can be compared.
func withoutLines(p *Policy) *Policy {
	c := p.Clone()
	for i := range c.Rules {
		r := &c.Rules[i]
		r.Line = 0
		for _, l := range []*[]Dest{&r.Allow, &r.Deny} {
			if len(*l) == 0 {
				*l = nil
			}
			for j := range *l {
				(*l)[j].Line = 0
			}
		}
	}
	if len(c.Rules) == 0 {
		c.Rules = nil
	}
	return c
}

// roundTrip checks Parse(Marshal(p)) == p and that Marshal is stable.
func roundTrip(t testing.TB, p *Policy) {
	t.Helper()
	out, err := Marshal(p)
	if err != nil {
		t.Fatalf("Marshal(%+v): %v", p, err)
	}
	q, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(Marshal(p)): %v\n%s", err, out)
	}
	if a, b := withoutLines(p), withoutLines(q); !reflect.DeepEqual(a, b) {
		t.Fatalf("round trip changed the policy:\n%+v\n%+v\n%s", a, b, out)
	}
	out2, err := Marshal(q)
	if err != nil || string(out2) != string(out) {
		t.Fatalf("Marshal not stable (%v):\n%s\n%s", err, out, out2)
	}
}

func TestMarshal(t *testing.T) {
	p := &Policy{Default: ActionDeny, Mode: ModeAudit, Rules: []Rule{
		{Name: "curl", Selector: Selector{Exe: "/usr/bin/curl"}, Action: ActionDeny, Audit: true,
			Allow: []Dest{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), PortLo: 80, PortHi: 90, Proto: ProtoTCP}},
			Deny:  []Dest{{Prefix: netip.MustParsePrefix("2001:db8::/32")}}},
		{Name: "web", Selector: Selector{Cgroup: "/system.slice/nginx.service"}, Action: ActionLocalOnly},
		{Name: "1000", Selector: Selector{User: "1000"}, Action: ActionAllow},
		{Name: "true", Selector: Selector{Group: "null"}, Action: ActionAllow},
		{Name: "win", Selector: Selector{Exe: `C:\Program Files\App\app.exe`}, Action: ActionDeny},
	}}
	out, err := Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `default: deny
mode: audit
rules:
  - name: curl
    exe: /usr/bin/curl
    action: deny
    audit: true
    allow:
      - 10.0.0.0/8 port 80-90 tcp
    deny:
      - 2001:db8::/32
  - name: web
    cgroup: /system.slice/nginx.service
    action: local-only
  - name: "1000"
    user: "1000"
    action: allow
  - name: "true"
    group: "null"
    action: allow
  - name: win
    exe: C:\Program Files\App\app.exe
    action: deny
`
	if string(out) != want {
		t.Errorf("Marshal =\n%s\nwant\n%s", out, want)
	}
	roundTrip(t, p)
	roundTrip(t, DefaultPolicy())
	if out, _ := Marshal(DefaultPolicy()); string(out) != "default: allow\nmode: enforce\nrules: []\n" {
		t.Errorf("Marshal(DefaultPolicy()) = %q", out)
	}
}

func TestMarshalRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rule   Rule
		phrase string
	}{
		{"two selectors", Rule{Name: "a", Selector: Selector{Exe: "/a", User: "b"}}, "has both exe and user"},
		{"no name", Rule{Selector: Selector{Exe: "/a"}}, "no name"},
		{"unmasked", Rule{Name: "a", Selector: Selector{Exe: "/a"}, Allow: []Dest{{Prefix: netip.MustParsePrefix("10.1.0.0/8")}}}, "not masked"},
		{"mapped", Rule{Name: "a", Selector: Selector{Exe: "/a"}, Allow: []Dest{{Prefix: netip.MustParsePrefix("::ffff:10.0.0.0/104")}}}, "IPv4-mapped"},
		{"icmp", Rule{Name: "a", Selector: Selector{Exe: "/a"}, Allow: []Dest{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Proto: ProtoICMP}}}, "protocol"},
		{"half port", Rule{Name: "a", Selector: Selector{Exe: "/a"}, Deny: []Dest{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), PortHi: 5}}}, "bad port range"},
		{"bad utf8", Rule{Name: "a", Selector: Selector{Exe: "/a\xff"}}, "UTF-8"},
		{"bad action", Rule{Name: "a", Selector: Selector{Exe: "/a"}, Action: 9}, "unknown action"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Marshal(&Policy{Rules: []Rule{tc.rule}})
			var pe *PolicyError
			if !errors.As(err, &pe) || !strings.Contains(pe.Msg, tc.phrase) {
				t.Errorf("Marshal = %v, want a PolicyError with %q", err, tc.phrase)
			}
		})
	}
}

func TestRuleView(t *testing.T) {
	r := Rule{Name: "backup", Selector: Selector{Exe: "/usr/bin/rclone"}, Action: ActionDeny,
		Allow: []Dest{{Prefix: netip.MustParsePrefix("203.0.113.0/24"), PortLo: 443, PortHi: 443, Proto: ProtoTCP}}}
	v := ViewRule(r)
	b, err := json.Marshal([]RuleView{v})
	if err != nil {
		t.Fatal(err)
	}
	const want = `[{"name":"backup","exe":"/usr/bin/rclone","action":"deny","allow":["203.0.113.0/24 port 443 tcp"]}]`
	if string(b) != want {
		t.Errorf("json = %s\nwant  %s", b, want)
	}
	back, err := v.Rule()
	if err != nil || !reflect.DeepEqual(back, r) {
		t.Errorf("Rule() = %+v, %v; want %+v", back, err, r)
	}
	if _, err := (RuleView{Name: "x", Exe: "/a", Action: "drop"}).Rule(); err == nil || !strings.Contains(err.Error(), "unknown action") {
		t.Errorf("bad action: %v", err)
	}
	if _, err := (RuleView{Name: "x", Exe: "/a", Cgroup: "/b", Action: "deny"}).Rule(); err == nil || !strings.Contains(err.Error(), "has both") {
		t.Errorf("two selectors: %v", err)
	}
	if _, err := (RuleView{Name: "x", Exe: "/a", Action: "deny", Deny: []string{"1.2.3.4 port 0"}}).Rule(); err == nil || strings.HasPrefix(err.Error(), "line") {
		t.Errorf("bad dest: %v", err)
	}
}

func TestPolicyView(t *testing.T) {
	p, err := Parse([]byte("default: deny\nrules:\n  - name: a\n    cgroup: /a/\n    action: allow\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ViewPolicy(p))
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"default":"deny","mode":"enforce","rules":[{"name":"a","cgroup":"/a","action":"allow"}]}`
	if string(b) != want {
		t.Errorf("json = %s", b)
	}
	var v PolicyView
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	q, err := v.Policy()
	if err != nil || !reflect.DeepEqual(withoutLines(p), withoutLines(q)) {
		t.Errorf("Policy() = %+v, %v", q, err)
	}
	v.Rules = append(v.Rules, v.Rules[0])
	if _, err := v.Policy(); err == nil || !strings.Contains(err.Error(), "duplicate rule name") {
		t.Errorf("duplicate: %v", err)
	}
}

func TestMarshalInboundResolversNames(t *testing.T) {
	in := "default: deny\nmode: enforce\ndefault_inbound: allow\nresolvers:\n  - 10.0.0.53\n  - '[2001:db8::53]:5353'\nrules:\n  - name: a\n    user: \"1\"\n    action: deny\n    allow:\n      - '*.debian.org port 443 tcp'\n      - 0.0.0.0/0 port 22 tcp in\n"
	p, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	q, err := Parse(out)
	if err != nil {
		t.Fatalf("re-parse %s: %v", out, err)
	}
	if !q.InboundSet || q.DefaultInbound != ActionAllow || len(q.Resolvers) != 2 || q.Resolvers[1].Port() != 5353 ||
		q.Rules[0].Allow[0].Name != "*.debian.org" || q.Rules[0].Allow[1].Dir != DirIn {
		t.Errorf("round trip lost something:\n%s\n%+v", out, q)
	}
	if _, err := (ViewPolicy(q)).Policy(); err != nil {
		t.Errorf("view round trip: %v", err)
	}
}
