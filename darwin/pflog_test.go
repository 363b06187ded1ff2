package darwin

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

var now = time.Date(2025, 11, 25, 15, 4, 5, 0, time.UTC)

func TestParsePflog(t *testing.T) {
	for _, c := range []struct {
		line string
		want LogEntry
	}{
		{ // TCP SYN blocked by rule 12 of our anchor, reached from main rule 4
			"00:00:00.000000 rule 4.exewall.12/0(match): block out on en0: 192.168.1.10.52144 > 203.0.113.5.443: Flags [S], seq 2743385165, win 65535, options [mss 1460,nop,wscale 6,nop,nop,TS val 1 ecr 0,sackOK,eol], length 0",
			LogEntry{Time: now, RuleNr: 4, Ruleset: "exewall", SubNr: 12, Reason: "0(match)", Action: "block", Dir: "out", Iface: "en0",
				Proto: "tcp", Saddr: ip("192.168.1.10"), Sport: 52144, Daddr: ip("203.0.113.5"), Dport: 443},
		},
		{ // recent tcpdump prints the socket's uid
			"00:00:01.002003 rule 4.exewall.3/0(match) [uid 501]: block out on en0: 2001:db8::10.61000 > 2001:db8:1::5.443: Flags [S], seq 1, win 65535, length 0",
			LogEntry{Time: now, RuleNr: 4, Ruleset: "exewall", SubNr: 3, Reason: "0(match)", UID: 501, HasUID: true, Action: "block", Dir: "out", Iface: "en0",
				Proto: "tcp", Saddr: ip("2001:db8::10"), Sport: 61000, Daddr: ip("2001:db8:1::5"), Dport: 443},
		},
		{ // an audited DNS query: tcpdump decodes the payload, no "UDP"
			"00:00:00.500000 rule 4.exewall.7/0(match) [uid 502]: pass out on en0: 192.168.1.10.53000 > 8.8.8.8.53: 4660+ A? example.com. (29)",
			LogEntry{Time: now, RuleNr: 4, Ruleset: "exewall", SubNr: 7, Reason: "0(match)", UID: 502, HasUID: true, Action: "pass", Dir: "out", Iface: "en0",
				Proto: "udp", Saddr: ip("192.168.1.10"), Sport: 53000, Daddr: ip("8.8.8.8"), Dport: 53},
		},
		{
			"00:00:02.000001 rule 4.exewall.9/0(match): block out on utun3: 10.0.0.5.5000 > 198.51.100.7.9999: UDP, length 5",
			LogEntry{Time: now, RuleNr: 4, Ruleset: "exewall", SubNr: 9, Reason: "0(match)", Action: "block", Dir: "out", Iface: "utun3",
				Proto: "udp", Saddr: ip("10.0.0.5"), Sport: 5000, Daddr: ip("198.51.100.7"), Dport: 9999},
		},
		{ // ping: ICMP has no ports
			"00:00:00.000042 rule 4.exewall.20/0(match): block out on en0: 192.168.1.10 > 1.1.1.1: ICMP echo request, id 17, seq 0, length 64",
			LogEntry{Time: now, RuleNr: 4, Ruleset: "exewall", SubNr: 20, Reason: "0(match)", Action: "block", Dir: "out", Iface: "en0",
				Proto: "icmp", Saddr: ip("192.168.1.10"), Daddr: ip("1.1.1.1")},
		},
		{
			"00:00:00.100000 rule 4.exewall.21/0(match): block out on en0: 2001:db8::10 > 2606:4700::1111: ICMP6, echo request, id 5, seq 1, length 16",
			LogEntry{Time: now, RuleNr: 4, Ruleset: "exewall", SubNr: 21, Reason: "0(match)", Action: "block", Dir: "out", Iface: "en0",
				Proto: "icmp", Saddr: ip("2001:db8::10"), Daddr: ip("2606:4700::1111")},
		},
		{ // Apple's own anchor; its name holds dots
			"00:00:03.000000 rule 4.250.ApplicationFirewall.0/0(match): block in on en0: 203.0.113.9.51000 > 192.168.1.10.22: Flags [S], seq 9, win 1024, length 0",
			LogEntry{Time: now, RuleNr: 4, Ruleset: "250.ApplicationFirewall", SubNr: 0, Reason: "0(match)", Action: "block", Dir: "in", Iface: "en0",
				Proto: "tcp", Saddr: ip("203.0.113.9"), Sport: 51000, Daddr: ip("192.168.1.10"), Dport: 22},
		},
		{ // a rule of the main ruleset, without -e's header order quirks: "IP " prefix
			"00:00:00.000000 rule 0/0(match): block out on en0: IP 192.168.1.10.1234 > 203.0.113.5.80: Flags [S], seq 1, length 0",
			LogEntry{Time: now, RuleNr: 0, SubNr: -1, Reason: "0(match)", Action: "block", Dir: "out", Iface: "en0",
				Proto: "tcp", Saddr: ip("192.168.1.10"), Sport: 1234, Daddr: ip("203.0.113.5"), Dport: 80},
		},
		{ // older tcpdump (OpenBSD style): no colon after the reason
			"Nov 25 15:04:05.000000 rule 2.exewall.1/(match) block out on en0: 192.168.1.10.1234 > 203.0.113.5.443: Flags [S], seq 1, length 0",
			LogEntry{Time: now, RuleNr: 2, Ruleset: "exewall", SubNr: 1, Reason: "(match)", Action: "block", Dir: "out", Iface: "en0",
				Proto: "tcp", Saddr: ip("192.168.1.10"), Sport: 1234, Daddr: ip("203.0.113.5"), Dport: 443},
		},
		{ // -tttt gives an absolute time, which wins over the read time
			"2025-11-25 09:00:00.250000 rule 4.exewall.12/0(match): block out on en0: 192.168.1.10.52144 > 203.0.113.5.443: Flags [S], seq 1, length 0",
			LogEntry{Time: time.Date(2025, 11, 25, 9, 0, 0, 250000000, time.Local), RuleNr: 4, Ruleset: "exewall", SubNr: 12, Reason: "0(match)", Action: "block", Dir: "out", Iface: "en0",
				Proto: "tcp", Saddr: ip("192.168.1.10"), Sport: 52144, Daddr: ip("203.0.113.5"), Dport: 443},
		},
		{ // an IPv4-mapped address keeps its mapping here; Violation unmaps it
			"00:00:00.000000 rule 4.exewall.2/0(match): block out on en0: ::ffff:192.168.1.10.1234 > ::ffff:203.0.113.5.443: Flags [S], seq 1, length 0",
			LogEntry{Time: now, RuleNr: 4, Ruleset: "exewall", SubNr: 2, Reason: "0(match)", Action: "block", Dir: "out", Iface: "en0",
				Proto: "tcp", Saddr: ip("::ffff:192.168.1.10"), Sport: 1234, Daddr: ip("::ffff:203.0.113.5"), Dport: 443},
		},
	} {
		got, err := ParsePflog(c.line, now)
		if err != nil {
			t.Errorf("ParsePflog(%q): %v", c.line, err)
			continue
		}
		if got != c.want {
			t.Errorf("ParsePflog(%q)\n got %+v\nwant %+v", c.line, got, c.want)
		}
	}
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestParsePflogRejects(t *testing.T) {
	for _, line := range []string{
		"tcpdump: verbose output suppressed, use -v[v]... for full protocol decode",
		"listening on pflog0, link-type PFLOG (OpenBSD pflog file), snapshot length 524288 bytes",
		"00:00:00.000000 rule x.exewall.1/0(match): block out on en0: 1.2.3.4.5 > 5.6.7.8.9: UDP, length 1",
		"00:00:00.000000 rule 4.exewall.12/0(match): block out on en0: garbage",
		"00:00:00.000000 rule 4.exewall.12/0(match): block out on en0: 1.2.3.4.99999 > 5.6.7.8.9: UDP, length 1",
		"",
	} {
		if e, err := ParsePflog(line, now); err == nil {
			t.Errorf("ParsePflog(%q) = %+v, want an error", line, e)
		}
	}
}

func TestPflogViolation(t *testing.T) {
	labels := map[int]Label{
		3:  {"backup", engine.VerdictDeny},
		7:  {"trial", engine.VerdictAudit},
		8:  {"trial", engine.VerdictAllow},
		20: {"", engine.VerdictDeny},
	}
	lookup := func(nr int) (Label, bool) { l, ok := labels[nr]; return l, ok }
	for _, c := range []struct {
		line string
		want engine.Violation
		ok   bool
	}{
		{"00:00:01.002003 rule 4.exewall.3/0(match) [uid 501]: block out on en0: 2001:db8::10.61000 > 2001:db8:1::5.443: Flags [S], seq 1, win 65535, length 0",
			engine.Violation{Time: now, UID: 501, Rule: "backup", Verdict: engine.VerdictDeny, Proto: "tcp", Family: "ipv6", Daddr: ip("2001:db8:1::5"), Dport: 443}, true},
		{"00:00:00.500000 rule 4.exewall.7/0(match): pass out on en0: 192.168.1.10.53000 > 8.8.8.8.53: 4660+ A? example.com. (29)",
			engine.Violation{Time: now, Rule: "trial", Verdict: engine.VerdictAudit, Proto: "udp", Family: "ipv4", Daddr: ip("8.8.8.8"), Dport: 53}, true},
		{"00:00:00.000042 rule 4.exewall.20/0(match): block out on en0: 192.168.1.10 > 1.1.1.1: ICMP echo request, id 17, seq 0, length 64",
			engine.Violation{Time: now, Verdict: engine.VerdictDeny, Proto: "icmp", Family: "ipv4", Daddr: ip("1.1.1.1")}, true},
		// unknown rule number (numbers not read yet): the action still tells the verdict
		{"00:00:00.000000 rule 4.exewall.99/0(match): pass out on en0: 10.0.0.5.5000 > 198.51.100.7.9999: UDP, length 5",
			engine.Violation{Time: now, Verdict: engine.VerdictAudit, Proto: "udp", Family: "ipv4", Daddr: ip("198.51.100.7"), Dport: 9999}, true},
		// IPv4-mapped destinations are reported as IPv4
		{"00:00:00.000000 rule 4.exewall.3/0(match): block out on en0: ::ffff:192.168.1.10.1234 > ::ffff:203.0.113.5.443: Flags [S], seq 1, length 0",
			engine.Violation{Time: now, Rule: "backup", Verdict: engine.VerdictDeny, Proto: "tcp", Family: "ipv4", Daddr: ip("203.0.113.5"), Dport: 443}, true},
		// not ours: another anchor, the main ruleset, inbound, an allow rule
		{"00:00:03.000000 rule 4.250.ApplicationFirewall.0/0(match): block in on en0: 203.0.113.9.51000 > 192.168.1.10.22: Flags [S], seq 9, length 0", engine.Violation{}, false},
		{"00:00:00.000000 rule 3/0(match): block out on en0: 192.168.1.10.1234 > 203.0.113.5.80: Flags [S], seq 1, length 0", engine.Violation{}, false},
		{"00:00:00.000000 rule 4.exewall.3/0(match): block in on en0: 203.0.113.5.443 > 192.168.1.10.1234: Flags [S], seq 1, length 0", engine.Violation{}, false},
		{"00:00:00.000000 rule 4.exewall.8/0(match): pass out on en0: 192.168.1.10.1234 > 192.0.2.1.443: Flags [S], seq 1, length 0", engine.Violation{}, false},
		{"00:00:00.000000 rule 4.exewallx.3/0(match): block out on en0: 192.168.1.10.1234 > 192.0.2.1.443: Flags [S], seq 1, length 0", engine.Violation{}, false},
	} {
		e, err := ParsePflog(c.line, now)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := e.Violation(anchorNm, lookup)
		if ok != c.ok || got != c.want {
			t.Errorf("Violation of %q\n got %+v, %v\nwant %+v, %v", c.line, got, ok, c.want, c.ok)
		}
	}
}

func TestPflogLongAnchorName(t *testing.T) {
	// pflog keeps 15 bytes of an anchor's name.
	e, err := ParsePflog("00:00:00.000000 rule 4.exewall-testing.1/0(match): block out on en0: 10.0.0.1.1 > 10.0.0.2.2: UDP, length 1", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.Violation("exewall-testing-anchor", nil); !ok {
		t.Error("a truncated anchor name was not recognised")
	}
}

func TestReadPflog(t *testing.T) {
	in := strings.Join([]string{
		"tcpdump: verbose output suppressed, use -v[v]... for full protocol decode",
		"listening on pflog0, link-type PFLOG (OpenBSD pflog file), snapshot length 524288 bytes",
		"00:00:00.000000 rule 4.exewall.3/0(match): block out on en0: 192.168.1.10.52144 > 203.0.113.5.443: Flags [S], seq 1, length 0",
		"00:00:00.100000 rule 4.com.apple.internet-sharing.0/0(match): pass out on en0: 192.168.2.2.1 > 8.8.8.8.53: 1+ A? a. (17)",
		"00:00:00.200000 rule 4.exewall.7/0(match): pass out on en0: 192.168.1.10.53000 > 8.8.4.4.53: 4660+ A? example.com. (29)",
	}, "\n") + "\n"
	out := make(chan engine.Violation, 10)
	lookup := func(nr int) (Label, bool) {
		return map[int]Label{3: {"backup", engine.VerdictDeny}, 7: {"trial", engine.VerdictAudit}}[nr], nr == 3 || nr == 7
	}
	if err := ReadPflog(context.Background(), strings.NewReader(in), anchorNm, lookup, func() time.Time { return now }, out); err != nil {
		t.Fatal(err)
	}
	close(out)
	var got []string
	for v := range out {
		got = append(got, v.Rule+" "+string(v.Verdict)+" "+v.Daddr.String())
	}
	want := "backup deny 203.0.113.5,trial audit 8.8.4.4"
	if strings.Join(got, ",") != want {
		t.Errorf("ReadPflog sent %q, want %q", got, want)
	}
}
