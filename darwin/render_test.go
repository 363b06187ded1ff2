package darwin

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/exewall/exewall/engine"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (run go test -update and review the diff):\n%s", path, got)
	}
}

func dest(s string) engine.Dest {
	d, err := parseDest(s)
	if err != nil {
		panic(err)
	}
	return d
}

// parseDest reads "CIDR [port N|N-M] [tcp|udp|icmp]", enough for tests:
// the engine's own parser is written elsewhere.
func parseDest(s string) (engine.Dest, error) {
	f := strings.Fields(s)
	p, err := netip.ParsePrefix(f[0])
	if err != nil {
		a, err2 := netip.ParseAddr(f[0])
		if err2 != nil {
			return engine.Dest{}, err
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	d := engine.Dest{Prefix: p.Masked()}
	for i := 1; i < len(f); i++ {
		switch f[i] {
		case "port":
			i++
			lo, hi, ok := strings.Cut(f[i], "-")
			if !ok {
				hi = lo
			}
			d.PortLo, d.PortHi = atou16(lo), atou16(hi)
		case "tcp":
			d.Proto = engine.ProtoTCP
		case "udp":
			d.Proto = engine.ProtoUDP
		case "icmp":
			d.Proto = engine.ProtoICMP
		}
	}
	return d, nil
}

func atou16(s string) uint16 {
	var n uint16
	for _, c := range s {
		n = n*10 + uint16(c-'0')
	}
	return n
}

func dests(ss ...string) []engine.Dest {
	var out []engine.Dest
	for _, s := range ss {
		out = append(out, dest(s))
	}
	return out
}

var testHostNets = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),       // a public on-link subnet: local
	netip.MustParsePrefix("10.1.0.0/16"),        // inside 10.0.0.0/8 already
	netip.MustParsePrefix("2001:db8:1::/64"),    // IPv6 on-link prefix
	netip.MustParsePrefix("169.254.169.254/32"), // never local
	netip.MustParsePrefix("2001:db8:1::/64"),    // duplicate
}

var renderCases = []struct {
	name string
	p    *engine.Policy
}{
	{"deny", &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "builder", Selector: engine.Selector{User: "_build"}, Action: engine.ActionDeny},
	}}},
	{"allow", &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "web", Selector: engine.Selector{User: "501"}, Action: engine.ActionAllow,
			Deny: dests("10.0.0.0/8", "fd00::/8 port 22 tcp")},
	}}},
	{"local_only", &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "ci", Selector: engine.Selector{Group: "ci-runners"}, Action: engine.ActionLocalOnly,
			Allow: dests("169.254.169.254 port 80 tcp")},
	}}},
	{"lists", &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "backup", Selector: engine.Selector{User: "backup"}, Action: engine.ActionDeny,
			Allow: dests("203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24", "10.0.0.0/8"),
			Deny:  dests("203.0.113.66", "198.51.100.0/25")},
		{Name: "ci", Selector: engine.Selector{Group: "600"}, Action: engine.ActionAllow,
			Deny: dests("0.0.0.0/0 port 25 tcp", "::/0 port 25 tcp")},
	}}},
	{"ports", &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "rclone", Selector: engine.Selector{User: "rclone"}, Action: engine.ActionDeny,
			Allow: dests("203.0.113.0/24 port 443 tcp", "203.0.113.0/24 port 8000-8100 udp",
				"198.51.100.10 port 53", "192.0.2.0/24 icmp")},
	}}},
	{"ipv6", &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "six", Selector: engine.Selector{User: "six"}, Action: engine.ActionLocalOnly,
			Allow: dests("2001:db8::/32 port 443", "2606:4700::/32 port 443 tcp", "fd00:ec2::254 port 80 tcp"),
			Deny:  dests("2001:db8:dead::/48", "fd12:3456::/32", "::/0 port 25")},
	}}},
	{"audit_mode", &engine.Policy{Default: engine.ActionDeny, Mode: engine.ModeAudit, Rules: []engine.Rule{
		{Name: "builder", Selector: engine.Selector{User: "_build"}, Action: engine.ActionLocalOnly,
			Allow: dests("203.0.113.0/24 port 443 tcp"), Deny: dests("10.9.0.0/16")},
	}}},
	{"rule_audit", &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "trial", Selector: engine.Selector{User: "trial"}, Action: engine.ActionDeny, Audit: true,
			Allow: dests("192.0.2.0/24 port 443 tcp"), Deny: dests("192.0.2.7 port 443 tcp")},
		{Name: "strict", Selector: engine.Selector{User: "strict"}, Action: engine.ActionDeny},
	}}},
	{"default_deny", &engine.Policy{Default: engine.ActionDeny, Rules: []engine.Rule{
		{Name: "me", Selector: engine.Selector{User: "alice"}, Action: engine.ActionAllow},
		{Name: "dns", Selector: engine.Selector{User: "_mdnsresponder"}, Action: engine.ActionAllow},
	}}},
	{"default_local_only", &engine.Policy{Default: engine.ActionLocalOnly}},
	{"empty", engine.DefaultPolicy()},
}

func TestRenderGolden(t *testing.T) {
	for _, c := range renderCases {
		t.Run(c.name, func(t *testing.T) {
			rs, err := renderRuleset(c.p, testHostNets)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, c.name+".golden", rs.Text)
			for l := range rs.Labels {
				if !strings.Contains(rs.Text, `label "`+l+`"`) {
					t.Errorf("label %q is not in the text", l)
				}
				if len(l) > 63 {
					t.Errorf("label %q is longer than pf's 63 bytes", l)
				}
			}
		})
	}
}

func TestRenderRefuses(t *testing.T) {
	for _, c := range []struct {
		name        string
		rules       []engine.Rule
		unsupported bool
		want        []string
	}{
		{"exe", []engine.Rule{
			{Name: "curl", Selector: engine.Selector{Exe: "/usr/bin/curl"}, Action: engine.ActionDeny},
			{Name: "me", Selector: engine.Selector{User: "alice"}, Action: engine.ActionDeny},
			{Name: "browser", Selector: engine.Selector{Exe: "/Applications/Firefox.app/Contents/MacOS/firefox"}, Action: engine.ActionLocalOnly},
		}, true, []string{`"browser"`, "action local-only", "Application Firewall", "incoming", "user: or group: rule", "dedicated user"}},
		{"exe_entries", []engine.Rule{
			{Name: "curl", Selector: engine.Selector{Exe: "/usr/bin/curl"}, Action: engine.ActionDeny,
				Allow: dests("203.0.113.0/24 port 443 tcp")},
		}, true, []string{`"curl"`, "entries", "Application Firewall"}},
		{"exe_audit", []engine.Rule{
			{Name: "curl", Selector: engine.Selector{Exe: "/usr/bin/curl"}, Action: engine.ActionDeny, Audit: true},
		}, true, []string{`"curl"`, "audit"}},
		{"cgroup", []engine.Rule{
			{Name: "web", Selector: engine.Selector{Cgroup: "/system.slice/nginx.service"}, Action: engine.ActionLocalOnly},
		}, true, []string{`"web"`, "cgroup", "user: or group: rule"}},
		{"duplicate", []engine.Rule{
			{Name: "a", Selector: engine.Selector{User: "alice"}, Action: engine.ActionDeny},
			{Name: "b", Selector: engine.Selector{User: "alice"}, Action: engine.ActionAllow},
		}, false, []string{`"a" and "b" both select user alice`}},
		{"bad name", []engine.Rule{
			{Name: "q", Selector: engine.Selector{Group: `x" label "y`}, Action: engine.ActionDeny},
		}, false, []string{"not a valid macOS group name"}},
		{"uid range", []engine.Rule{
			{Name: "u", Selector: engine.Selector{User: "4294967295"}, Action: engine.ActionDeny},
		}, false, []string{"out of range"}},
		{"no selector", []engine.Rule{{Name: "n", Action: engine.ActionDeny}}, false, []string{"selects no processes"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := renderRuleset(&engine.Policy{Rules: c.rules}, nil)
			if err == nil {
				t.Fatal("Render accepted the policy")
			}
			if got := errors.Is(err, engine.ErrNotSupported); got != c.unsupported {
				t.Errorf("errors.Is(err, ErrNotSupported) = %v, want %v: %v", got, c.unsupported, err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if c.unsupported {
				golden(t, "refuse_"+c.name+".golden", err.Error()+"\n")
			}
		})
	}
}

// TestExeDenyAccepted: an exe: rule with action deny and no entries is
// the Application Firewall's, not pf's: the anchor does not mention it.
func TestExeDenyAccepted(t *testing.T) {
	p := &engine.Policy{Rules: []engine.Rule{
		{Name: "curl", Selector: engine.Selector{Exe: "/usr/bin/curl"}, Action: engine.ActionDeny},
		{Name: "me", Selector: engine.Selector{User: "501"}, Action: engine.ActionLocalOnly},
	}}
	rs, err := renderRuleset(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rs.Text, "curl") || rs.Rules != 1 {
		t.Errorf("pf anchor of an exe deny rule (%d rules):\n%s", rs.Rules, rs.Text)
	}
	if got := blockedExes(p); !slices.Equal(got, []string{"/usr/bin/curl"}) {
		t.Errorf("blocked: %v", got)
	}
}

func TestLocalEntries(t *testing.T) {
	got := strings.Join(localEntries(testHostNets), ", ")
	want := "127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, ::1, fc00::/7, fe80::/10, " +
		"192.0.2.0/24, 2001:db8:1::/64, !169.254.169.254, !fd00:ec2::254"
	if got != want {
		t.Errorf("LocalEntries:\n got %s\nwant %s", got, want)
	}
}

func TestLabelRoundTrip(t *testing.T) {
	long := strings.Repeat("x", 80)
	rs, err := renderRuleset(&engine.Policy{Rules: []engine.Rule{
		{Name: "spaces and $nr", Selector: engine.Selector{User: "1"}, Action: engine.ActionDeny},
		{Name: long, Selector: engine.Selector{User: "2"}, Action: engine.ActionDeny, Audit: true},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for l, want := range rs.Labels {
		if strings.ContainsAny(l, "$ \"") {
			t.Errorf("label %q holds a character pf treats specially", l)
		}
		got, ok := parseLabel(l)
		if !ok || got.Verdict != want.Verdict {
			t.Errorf("ParseLabel(%q) = %+v, %v; want verdict %s", l, got, ok, want.Verdict)
		}
	}
	if _, ok := parseLabel("someone-else"); ok {
		t.Error("ParseLabel accepted a foreign label")
	}
}
