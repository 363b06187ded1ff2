package darwin

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/exewall/exewall/engine"
)

// This file checks the rendered rules against the engine's reference
// evaluator: a small interpreter of the pf rules Render writes (first quick
// match wins, else the last match, else pass; a matching rule's tag is seen
// by the rules after it) judges the same connections as engine.Evaluator.

type simPacket struct {
	uid, gid int // -1: pf cannot tie the packet to a socket
	dst      netip.Addr
	port     uint16
	proto    engine.Proto // ICMP packets are echo requests
	// flags of a TCP packet: "S" a connection attempt (the zero value),
	// "SA" a server's SYN-ACK, "A" any later packet of a connection.
	flags string
}

type simRule struct {
	pass, log, quick bool
	af               string
	protos           []string
	to               string // any, <table>, a prefix
	neg              bool
	lo, hi           int
	userOp, groupOp  string
	user, group      int
	icmpEcho         bool
	syn              bool // flags S/SA
	tag, tagged      string
	label            string
}

type simEntry struct {
	p   netip.Prefix
	neg bool
}

type sim struct {
	tables map[string][]simEntry
	rules  []simRule
}

func parseSim(t *testing.T, text string) *sim {
	t.Helper()
	s := &sim{tables: map[string][]simEntry{}}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "table <"); ok {
			name, list, _ := strings.Cut(rest, "> const { ")
			list = strings.TrimSuffix(list, " }")
			for _, e := range strings.Split(list, ", ") {
				neg := strings.HasPrefix(e, "!")
				s.tables[name] = append(s.tables[name], simEntry{mustPrefix(t, strings.TrimPrefix(e, "!")), neg})
			}
			continue
		}
		s.rules = append(s.rules, parseSimRule(t, line))
	}
	return s
}

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	if p, err := netip.ParsePrefix(s); err == nil {
		return p
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatalf("bad address %q", s)
	}
	return netip.PrefixFrom(a, a.BitLen())
}

func parseSimRule(t *testing.T, line string) simRule {
	t.Helper()
	f := strings.Fields(line)
	r := simRule{}
	for i := 0; i < len(f); i++ {
		switch w := f[i]; w {
		case "pass":
			r.pass = true
		case "block", "return", "out", "from":
		case "log":
			if f[i+1] == "(user)" {
				i++
			}
			r.log = true
		case "quick":
			r.quick = true
		case "inet", "inet6":
			r.af = w
		case "proto":
			if f[i+1] == "{" {
				for i += 2; f[i] != "}"; i++ {
					r.protos = append(r.protos, f[i])
				}
			} else {
				i++
				r.protos = []string{f[i]}
			}
		case "any":
			if f[i-1] == "to" {
				r.to = "any"
			}
		case "to":
			i++
			if f[i] == "!" {
				r.neg = true
				i++
			}
			r.to = f[i]
		case "port":
			i++
			lo, hi, ok := strings.Cut(f[i], ":")
			if !ok {
				hi = lo
			}
			r.lo, _ = strconv.Atoi(lo)
			r.hi, _ = strconv.Atoi(hi)
		case "user", "group":
			op, v := f[i+1], strings.Trim(f[i+2], `"`)
			i += 2
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("simulation needs numeric ids: %s", line)
			}
			if w == "user" {
				r.userOp, r.user = op, n
			} else {
				r.groupOp, r.group = op, n
			}
		case "icmp-type", "icmp6-type":
			i++
			r.icmpEcho = f[i] == "echoreq"
		case "label":
			i++
			r.label = strings.Trim(f[i], `"`)
		case "tag":
			i++
			r.tag = strings.Trim(f[i], `"`)
		case "tagged":
			i++
			r.tagged = strings.Trim(f[i], `"`)
		case "flags":
			i++
			if f[i] != "S/SA" {
				t.Fatalf("simulation knows only flags S/SA: %s", line)
			}
			r.syn = true
		case "drop", "all":
		default:
			t.Fatalf("simulation does not know %q in %s", w, line)
		}
	}
	return r
}

func (s *sim) inTable(name string, a netip.Addr) bool {
	best, hit := -1, false
	for _, e := range s.tables[name] {
		if e.p.Addr().Is4() == a.Is4() && e.p.Contains(a) && e.p.Bits() > best {
			best, hit = e.p.Bits(), !e.neg
		}
	}
	return hit
}

func (s *sim) match(r simRule, p simPacket, tag string) bool {
	if r.tagged != "" && r.tagged != tag {
		return false
	}
	if r.syn && p.proto == engine.ProtoTCP && p.flags != "" && p.flags != "S" {
		return false
	}
	dst := p.dst.Unmap()
	if r.af == "inet" && !dst.Is4() || r.af == "inet6" && dst.Is4() {
		return false
	}
	proto := p.proto.String()
	if p.proto == engine.ProtoICMP && !dst.Is4() {
		proto = "icmp6"
	}
	if len(r.protos) > 0 && !contains(r.protos, proto) {
		return false
	}
	var in bool
	switch {
	case r.to == "any", r.to == "":
		in = true
	case strings.HasPrefix(r.to, "<"):
		in = s.inTable(strings.Trim(r.to, "<>"), dst)
	default:
		pfx, err := netip.ParsePrefix(r.to)
		if err != nil {
			a := netip.MustParseAddr(r.to)
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		in = pfx.Addr().Is4() == dst.Is4() && pfx.Contains(dst)
	}
	if in == r.neg {
		return false
	}
	if r.lo != 0 && (p.proto == engine.ProtoICMP || int(p.port) < r.lo || int(p.port) > r.hi) {
		return false
	}
	if r.icmpEcho && p.proto != engine.ProtoICMP {
		return false
	}
	if !matchID(r.userOp, r.user, p.uid) || !matchID(r.groupOp, r.group, p.gid) {
		return false
	}
	return true
}

func matchID(op string, want, got int) bool {
	switch op {
	case "":
		return true
	case "=":
		return got >= 0 && got == want
	case ">=":
		return got >= 0 && got >= want
	}
	panic("unknown operator " + op)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// judge returns the deciding rule, nil when no rule matches (pf's default
// pass).
func (s *sim) judge(p simPacket) *simRule {
	var last *simRule
	tag := ""
	for i := range s.rules {
		if s.match(s.rules[i], p, tag) {
			if s.rules[i].tag != "" {
				tag = s.rules[i].tag
			}
			if s.rules[i].quick {
				return &s.rules[i]
			}
			last = &s.rules[i]
		}
	}
	return last
}

func TestRenderAgreesWithEvaluator(t *testing.T) {
	base := []engine.Rule{
		{Name: "backup", Selector: engine.Selector{User: "501"}, Action: engine.ActionDeny,
			Allow: dests("203.0.113.0/24 port 443 tcp", "2001:db8::/32 port 443", "198.51.100.0/24 port 8000-8100 udp", "10.0.0.0/8", "198.51.100.7 icmp"),
			Deny:  dests("203.0.113.66 port 443", "10.9.0.0/16", "10.0.0.0/8 port 22 tcp")},
		{Name: "dev", Selector: engine.Selector{User: "502"}, Action: engine.ActionLocalOnly,
			Allow: dests("169.254.169.254 port 80 tcp", "8.8.8.8 port 53 udp", "2606:4700::/32"),
			Deny:  dests("192.168.0.0/16", "192.168.1.0/24 port 22", "fd00::/8 port 53")},
		{Name: "open", Selector: engine.Selector{User: "503"}, Action: engine.ActionAllow, Audit: true,
			Deny: dests("0.0.0.0/0 port 25 tcp", "::/0 port 25 tcp", "8.8.8.8")},
		{Name: "ci", Selector: engine.Selector{Group: "600"}, Action: engine.ActionLocalOnly,
			Allow: dests("203.0.113.0/24 port 443 tcp")},
		{Name: "jail", Selector: engine.Selector{Group: "601"}, Action: engine.ActionDeny},
	}
	subjects := []struct{ uid, gid int }{{501, 20}, {502, 20}, {503, 20}, {504, 600}, {504, 601}, {501, 601}, {0, 0}, {9999, 9999}}
	dsts := []string{"127.0.0.1", "10.1.2.3", "10.9.0.1", "172.16.5.5", "192.168.1.1", "192.168.7.7", "169.254.169.254", "169.254.1.1",
		"192.0.2.10", "192.0.2.200", "198.51.100.7", "198.51.100.8", "203.0.113.9", "203.0.113.66", "8.8.8.8", "1.1.1.1",
		"::1", "fe80::1", "fd00:ec2::254", "fd12::1", "2001:db8::1", "2001:db8:1::5", "2606:4700::1111", "2a00::1", "::ffff:10.1.2.3"}
	ports := []uint16{22, 25, 53, 80, 443, 8000, 8050, 8100, 8101}
	hostNets := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:1::/64")}

	for _, mode := range []engine.Mode{engine.ModeEnforce, engine.ModeAudit} {
		for _, def := range []engine.Action{engine.ActionAllow, engine.ActionDeny, engine.ActionLocalOnly} {
			p := &engine.Policy{Default: def, Mode: mode, Rules: base}
			t.Run(fmt.Sprintf("%s/%s", mode, def), func(t *testing.T) {
				rs, err := renderRuleset(p, hostNets)
				if err != nil {
					t.Fatal(err)
				}
				s := parseSim(t, rs.Text)
				ev, err := engine.NewEvaluator(p, nil, hostNets)
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, sub := range subjects {
					subject := engine.Subject{UID: uint32(sub.uid), GID: uint32(sub.gid)}
					ruled := ev.SelectRule(subject) >= 0
					for _, d := range dsts {
						dst := netip.MustParseAddr(d)
						for _, proto := range []engine.Proto{engine.ProtoTCP, engine.ProtoUDP, engine.ProtoICMP} {
							pkt := simPacket{uid: sub.uid, gid: sub.gid, dst: dst, proto: proto}
							if proto == engine.ProtoICMP {
								// pf cannot tie ICMP to a socket: only the
								// default judges it, for everyone.
								if ruled {
									continue
								}
								pkt.uid, pkt.gid = -1, -1
								compare(t, s, rs, ev, subject, pkt)
								n++
								continue
							}
							for _, port := range ports {
								pkt.port = port
								compare(t, s, rs, ev, subject, pkt)
								n++
							}
						}
					}
				}
				// Forwarded packets and the kernel's own have no socket:
				// like the Linux hooks, exewall leaves them alone.
				for _, d := range dsts {
					for _, proto := range []engine.Proto{engine.ProtoTCP, engine.ProtoUDP} {
						pkt := simPacket{uid: -1, gid: -1, dst: netip.MustParseAddr(d), port: 443, proto: proto}
						if r := s.judge(pkt); r != nil {
							t.Errorf("%s %s without a socket is judged by %s", proto, d, r.label)
						}
					}
				}
				if n < 1000 {
					t.Fatalf("only %d cases compared", n)
				}
			})
		}
	}
}

func compare(t *testing.T, s *sim, rs *ruleset, ev *engine.Evaluator, sub engine.Subject, p simPacket) {
	t.Helper()
	want := ev.Evaluate(sub, p.dst, p.port, p.proto)
	got := engine.Decision{Verdict: engine.VerdictAllow}
	r := s.judge(p)
	if r != nil {
		l, ok := rs.Labels[r.label]
		if !ok {
			t.Fatalf("rule without a known label: %+v", r)
		}
		got = engine.Decision{Verdict: l.Verdict, Rule: l.Rule}
		// The verdict pf acts on must be the one the label claims.
		acts := engine.VerdictDeny
		if r.pass {
			acts = engine.VerdictAllow
			if r.log {
				acts = engine.VerdictAudit
			}
		}
		if acts != l.Verdict {
			t.Errorf("rule labelled %s acts as %s", r.label, acts)
		}
	}
	if got != want {
		t.Errorf("uid %d gid %d %s %s port %d: pf says %+v (%s), engine says %+v",
			sub.UID, sub.GID, p.proto, p.dst, p.port, got, label2(r), want)
	}
}

func label2(r *simRule) string {
	if r == nil {
		return "no rule"
	}
	return r.label
}

// semanticsPolicies are the policies the cases below run against: every
// default, enforced and audited, with rules of each action.
func semanticsPolicies() []*engine.Policy {
	rules := []engine.Rule{
		{Name: "dev", Selector: engine.Selector{User: "502"}, Action: engine.ActionLocalOnly,
			Allow: dests("8.8.8.8 port 53 udp")},
		{Name: "jail", Selector: engine.Selector{User: "503"}, Action: engine.ActionDeny},
		{Name: "web", Selector: engine.Selector{User: "504"}, Action: engine.ActionAllow, Deny: dests("10.0.0.0/8")},
		{Name: "ci", Selector: engine.Selector{Group: "600"}, Action: engine.ActionDeny},
	}
	var ps []*engine.Policy
	for _, mode := range []engine.Mode{engine.ModeEnforce, engine.ModeAudit} {
		for _, def := range []engine.Action{engine.ActionAllow, engine.ActionDeny, engine.ActionLocalOnly} {
			ps = append(ps, &engine.Policy{Default: def, Mode: mode, Rules: rules})
		}
	}
	return ps
}

var semanticsSubjects = []struct{ uid, gid int }{{501, 20}, {502, 20}, {503, 20}, {504, 20}, {505, 600}, {0, 0}}

// TestRenderServersAndExisting: only connection attempts are judged. A
// server's SYN-ACK (to a remote client or over loopback) and the packets of
// a connection open before the rules were loaded (pf holds no state for
// them) are never blocked, whoever runs the server, under any default.
func TestRenderServersAndExisting(t *testing.T) {
	hostNets := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	for _, p := range semanticsPolicies() {
		rs, err := renderRuleset(p, hostNets)
		if err != nil {
			t.Fatal(err)
		}
		s := parseSim(t, rs.Text)
		for _, sub := range semanticsSubjects {
			for _, d := range []string{"127.0.0.1", "::1", "192.0.2.9", "10.1.2.3", "203.0.113.5", "2606:4700::1"} {
				for _, flags := range []string{"SA", "A"} {
					pkt := simPacket{uid: sub.uid, gid: sub.gid, dst: netip.MustParseAddr(d), port: 50123, proto: engine.ProtoTCP, flags: flags}
					if r := s.judge(pkt); r != nil && !r.pass {
						t.Errorf("default %s %s: uid %d, TCP [%s] to %s blocked by %s", p.Default, p.Mode, sub.uid, flags, d, r.label)
					}
				}
			}
		}
		// The connection attempt itself is judged: a denied user's SYN to
		// loopback is blocked, as on Linux (deny means loopback too).
		syn := simPacket{uid: 503, gid: 20, dst: netip.MustParseAddr("127.0.0.1"), port: 8080, proto: engine.ProtoTCP}
		if r := s.judge(syn); p.Mode == engine.ModeEnforce && (r == nil || r.pass) {
			t.Errorf("default %s: a denied user's SYN to loopback passes", p.Default)
		}
	}
}

// TestRenderNeverEndsEvaluation: exewall's anchor never passes quick, so a
// rule after it (a VPN kill switch in the main ruleset) still judges every
// packet exewall allows; what exewall blocks stays blocked.
func TestRenderNeverEndsEvaluation(t *testing.T) {
	hostNets := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	killSwitch := parseSimRule(t, `block drop out quick from any to any label "killswitch"`)
	for _, p := range semanticsPolicies() {
		rs, err := renderRuleset(p, hostNets)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(rs.Text, "pass out quick") || strings.Contains(rs.Text, "pass out log (user) quick") {
			t.Errorf("default %s %s: a quick pass:\n%s", p.Default, p.Mode, rs.Text)
		}
		alone := parseSim(t, rs.Text)
		s := parseSim(t, rs.Text)
		s.rules = append(s.rules, killSwitch)
		for _, sub := range semanticsSubjects {
			for _, d := range []string{"127.0.0.1", "192.0.2.9", "10.1.2.3", "8.8.8.8", "2606:4700::1"} {
				for _, proto := range []engine.Proto{engine.ProtoTCP, engine.ProtoUDP, engine.ProtoICMP} {
					pkt := simPacket{uid: sub.uid, gid: sub.gid, dst: netip.MustParseAddr(d), port: 53, proto: proto}
					r := s.judge(pkt)
					if r == nil || r.pass {
						t.Errorf("default %s %s: uid %d %s to %s passes the kill switch (%s)", p.Default, p.Mode, sub.uid, proto, d, label2(r))
						continue
					}
					if a := alone.judge(pkt); a != nil && !a.pass && r.label != a.label {
						t.Errorf("uid %d %s to %s: blocked by %s alone, by %s with the kill switch", sub.uid, proto, d, a.label, r.label)
					}
				}
			}
		}
	}
}
