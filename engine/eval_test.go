package engine

import (
	"net/netip"
	"testing"
)

type fakeResolver map[string]FileID

func (f fakeResolver) Identify(p string) (FileID, bool, error) {
	id, ok := f[p]
	return id, ok, nil
}

func mustDest(t *testing.T, s string) Dest {
	t.Helper()
	d, err := ParseDest(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestEvaluator(t *testing.T) {
	curl, ff, rclone, other := FileID{Dev: 1, Ino: 10}, FileID{Dev: 1, Ino: 11}, FileID{Dev: 1, Ino: 12}, FileID{Dev: 1, Ino: 13}
	res := fakeResolver{"/usr/bin/curl": curl, "/usr/bin/firefox": ff, "/usr/bin/rclone": rclone}
	p := &Policy{Default: ActionAllow, Rules: []Rule{
		{Name: "curl", Selector: Selector{Exe: "/usr/bin/curl"}, Action: ActionDeny},
		{Name: "browser", Selector: Selector{Exe: "/usr/bin/firefox"}, Action: ActionLocalOnly},
		{Name: "backup", Selector: Selector{Exe: "/usr/bin/rclone"}, Action: ActionDeny, Audit: false,
			Allow: []Dest{mustDest(t, "203.0.113.0/24 port 443 tcp"), mustDest(t, "2001:db8::/32 port 443")},
			Deny:  []Dest{mustDest(t, "203.0.113.7/32")}},
		{Name: "svc", Selector: Selector{Cgroup: "/system.slice"}, Action: ActionLocalOnly},
		{Name: "web", Selector: Selector{Cgroup: "/system.slice/nginx.service"}, Action: ActionDeny, Audit: true},
		{Name: "nobody", Selector: Selector{User: "65534"}, Action: ActionDeny},
		{Name: "grp", Selector: Selector{Group: "4242"}, Action: ActionDeny},
		{Name: "never", Selector: Selector{Exe: "/missing"}, Action: ActionDeny},
	}}
	hostNets := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	ev, err := NewEvaluator(p, res, hostNets)
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	exe := func(id FileID) Subject { return Subject{Exe: id, HasExe: true, Cgroup: "/user.slice"} }
	cases := []struct {
		name  string
		s     Subject
		dst   string
		port  uint16
		proto Proto
		want  Verdict
		rule  string
	}{
		{"deny covers loopback", exe(curl), "127.0.0.1", 80, ProtoTCP, VerdictDeny, "curl"},
		{"deny covers mapped", exe(curl), "::ffff:1.2.3.4", 80, ProtoUDP, VerdictDeny, "curl"},
		{"default allow", exe(other), "1.2.3.4", 80, ProtoTCP, VerdictAllow, ""},
		{"kernel thread always allowed", Subject{Kernel: true, UID: 65534}, "1.2.3.4", 80, ProtoTCP, VerdictAllow, ""},
		{"local-only private", exe(ff), "10.1.2.3", 443, ProtoTCP, VerdictAllow, "browser"},
		{"local-only ULA", exe(ff), "fd12::1", 443, ProtoTCP, VerdictAllow, "browser"},
		{"local-only link-local v6", exe(ff), "fe80::1", 443, ProtoUDP, VerdictAllow, "browser"},
		{"local-only host subnet", exe(ff), "198.51.100.9", 443, ProtoTCP, VerdictAllow, "browser"},
		{"local-only public", exe(ff), "8.8.8.8", 443, ProtoTCP, VerdictDeny, "browser"},
		{"local-only metadata v4", exe(ff), "169.254.169.254", 80, ProtoTCP, VerdictDeny, "browser"},
		{"local-only metadata v6", exe(ff), "fd00:ec2::254", 80, ProtoTCP, VerdictDeny, "browser"},
		{"local-only other link-local", exe(ff), "169.254.1.1", 80, ProtoTCP, VerdictAllow, "browser"},
		{"allow list hit", exe(rclone), "203.0.113.5", 443, ProtoTCP, VerdictAllow, "backup"},
		{"allow list wrong port", exe(rclone), "203.0.113.5", 80, ProtoTCP, VerdictDeny, "backup"},
		{"allow list wrong proto", exe(rclone), "203.0.113.5", 443, ProtoUDP, VerdictDeny, "backup"},
		{"more specific deny wins", exe(rclone), "203.0.113.7", 443, ProtoTCP, VerdictDeny, "backup"},
		{"mapped judged as v4", exe(rclone), "::ffff:203.0.113.5", 443, ProtoTCP, VerdictAllow, "backup"},
		{"v6 allow any proto", exe(rclone), "2001:db8::1", 443, ProtoUDP, VerdictAllow, "backup"},
		{"cgroup rule", Subject{HasExe: true, Exe: other, Cgroup: "/system.slice/cron.service"}, "8.8.8.8", 53, ProtoUDP, VerdictDeny, "svc"},
		{"deepest cgroup wins, audited", Subject{HasExe: true, Exe: other, Cgroup: "/system.slice/nginx.service/x"}, "10.0.0.1", 80, ProtoTCP, VerdictAudit, "web"},
		{"cgroup prefix is by component", Subject{HasExe: true, Exe: other, Cgroup: "/system.slicer"}, "8.8.8.8", 53, ProtoUDP, VerdictAllow, ""},
		{"exe beats cgroup", Subject{HasExe: true, Exe: ff, Cgroup: "/system.slice/nginx.service"}, "10.0.0.1", 80, ProtoTCP, VerdictAllow, "browser"},
		{"cgroup beats uid", Subject{HasExe: true, Exe: other, Cgroup: "/system.slice", UID: 65534}, "10.0.0.1", 80, ProtoTCP, VerdictAllow, "svc"},
		{"uid rule", Subject{HasExe: true, Exe: other, Cgroup: "/", UID: 65534}, "10.0.0.1", 80, ProtoTCP, VerdictDeny, "nobody"},
		{"uid beats gid", Subject{HasExe: true, Exe: other, UID: 65534, GID: 4242}, "10.0.0.1", 80, ProtoTCP, VerdictDeny, "nobody"},
		{"gid rule", Subject{HasExe: true, Exe: other, UID: 1000, GID: 4242}, "10.0.0.1", 80, ProtoTCP, VerdictDeny, "grp"},
		{"no exe file", Subject{UID: 1000}, "10.0.0.1", 80, ProtoTCP, VerdictAllow, ""},
	}
	for _, c := range cases {
		got := ev.Evaluate(c.s, a(c.dst), c.port, c.proto)
		if got.Verdict != c.want || got.Rule != c.rule {
			t.Errorf("%s: got %s/%q, want %s/%q", c.name, got.Verdict, got.Rule, c.want, c.rule)
		}
	}

	p.Mode = ModeAudit
	if got := ev.Evaluate(exe(curl), a("1.1.1.1"), 1, ProtoTCP); got.Verdict != VerdictAudit {
		t.Errorf("audit mode: got %s", got.Verdict)
	}
	p.Mode = ModeEnforce
	p.Default = ActionLocalOnly
	if got := ev.Evaluate(exe(other), a("1.1.1.1"), 1, ProtoTCP); got.Verdict != VerdictDeny || got.Rule != "" {
		t.Errorf("default local-only: got %+v", got)
	}
}

func TestDestOrderDenyBeforeAllowAtEqualLength(t *testing.T) {
	r := &Rule{Allow: []Dest{mustDest(t, "10.0.0.0/8")}, Deny: []Dest{mustDest(t, "10.0.0.0/8 port 22")}}
	if v, _ := MatchDests(r, netip.MustParseAddr("10.1.1.1"), 22, ProtoTCP); v != VerdictDeny {
		t.Errorf("port 22: %s", v)
	}
	if v, _ := MatchDests(r, netip.MustParseAddr("10.1.1.1"), 80, ProtoTCP); v != VerdictAllow {
		t.Errorf("port 80: %s", v)
	}
	if _, ok := MatchDests(r, netip.MustParseAddr("::ffff:11.0.0.1"), 80, ProtoTCP); ok {
		t.Error("outside the prefix matched")
	}
	v6all := &Rule{Deny: []Dest{mustDest(t, "::/0")}}
	if _, ok := MatchDests(v6all, netip.MustParseAddr("::ffff:1.2.3.4"), 80, ProtoTCP); ok {
		t.Error("::/0 matched an IPv4-mapped destination")
	}
}

func TestJudgeNamesAndInbound(t *testing.T) {
	p, err := Parse([]byte(`default: deny
default_inbound: local-only
rules:
  - name: fetch
    user: "1000"
    action: deny
    allow:
      - "*.debian.org port 443 tcp"
      - 0.0.0.0/0 port 8080 tcp in
    deny:
      - deb.debian.org port 443 tcp out
`))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := NewEvaluator(p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	user := Subject{HasExe: true, UID: 1000}
	other := Subject{HasExe: true, UID: 2000}
	addr := netip.MustParseAddr("198.51.100.7")
	out := Attempt{Dir: DirOut, Addr: addr, Port: 443, Proto: ProtoTCP}
	if d := ev.Judge(user, out); d.Verdict != VerdictDeny || d.Name != "" {
		t.Errorf("no binding yet: %+v, want deny by the rule's action", d)
	}
	ev.Bind("fetch", "ftp.debian.org", addr)
	if d := ev.Judge(user, out); d.Verdict != VerdictAllow || d.Name != "*.debian.org" {
		t.Errorf("bound by a wildcard: %+v, want allow naming *.debian.org", d)
	}
	if d := ev.Judge(user, Attempt{Dir: DirOut, Addr: addr, Port: 80, Proto: ProtoTCP}); d.Verdict != VerdictDeny {
		t.Errorf("bound, other port: %+v, want deny", d)
	}
	ev.Bind("fetch", "deb.debian.org", addr)
	if d := ev.Judge(user, out); d.Verdict != VerdictDeny || d.Name != "deb.debian.org" {
		t.Errorf("equally specific allow and deny: %+v, want deny naming deb.debian.org", d)
	}
	ev.Unbind("fetch", addr)
	if d := ev.Judge(user, out); d.Verdict != VerdictDeny || d.Name != "" {
		t.Errorf("expired: %+v, want deny by the rule's action", d)
	}
	in := Attempt{Dir: DirIn, Addr: addr, Port: 8080, Proto: ProtoTCP}
	if d := ev.Judge(user, in); d.Verdict != VerdictAllow {
		t.Errorf("in entry on the local port: %+v, want allow", d)
	}
	if d := ev.Judge(user, Attempt{Dir: DirOut, Addr: addr, Port: 8080, Proto: ProtoTCP}); d.Verdict != VerdictDeny {
		t.Errorf("in entry used outbound: %+v, want deny", d)
	}
	if d := ev.Judge(other, in); d.Verdict != VerdictDeny || d.Rule != "" {
		t.Errorf("unlisted, public peer, default_inbound local-only: %+v, want deny", d)
	}
	if d := ev.Judge(other, Attempt{Dir: DirIn, Addr: netip.MustParseAddr("10.1.2.3"), Port: 22, Proto: ProtoTCP}); d.Verdict != VerdictAllow {
		t.Errorf("unlisted, local peer, default_inbound local-only: %+v, want allow", d)
	}
	p.DefaultInbound, p.InboundSet = ActionAllow, false
	if d := ev.Judge(other, in); d.Verdict != VerdictAllow {
		t.Errorf("no default_inbound: %+v, want allow although default is deny", d)
	}
}
