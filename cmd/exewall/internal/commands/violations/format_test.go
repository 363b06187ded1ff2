package violations

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

func TestFollowRowsAligned(t *testing.T) {
	var buf bytes.Buffer
	tab := newTable(&buf, true)
	now := time.Now()
	for _, v := range []engine.Violation{
		{Time: now, PID: 7, Comm: "a", Exe: "/a", Verdict: engine.VerdictDeny, Proto: "tcp", Daddr: netip.MustParseAddr("10.0.0.1"), Dport: 80},
		{Time: now, PID: 1234567, UID: 65534, Comm: "longer-comm", Rule: "a-long-rule", Exe: "/usr/lib/x/y/z", Verdict: engine.VerdictAudit,
			Proto: "udp", Daddr: netip.MustParseAddr("2001:db8::1"), Dport: 53},
	} {
		if err := tab.print(v); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want header and 2 rows:\n%s", buf.String())
	}
	col := strings.Index(lines[0], "DESTINATION")
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l[col:], "tcp ") && !strings.HasPrefix(l[col:], "udp ") {
			t.Errorf("row not aligned with the header's DESTINATION column %d:\n%s", col, buf.String())
		}
	}
}

func TestDestinationWording(t *testing.T) {
	for _, tc := range []struct {
		v    engine.Violation
		want string
	}{
		{engine.Violation{Proto: "icmp", Daddr: netip.MustParseAddr("0.0.0.0"), Call: engine.CallSocket, Verdict: engine.VerdictDeny}, "icmp socket"},
		{engine.Violation{Proto: "icmp", Daddr: netip.MustParseAddr("0.0.0.0"), Verdict: engine.VerdictDeny}, "icmp socket"},
		{engine.Violation{Proto: "udp", Daddr: netip.MustParseAddr("198.51.100.10"), Dport: 80, Call: engine.CallConnect, Verdict: engine.VerdictDeny},
			"udp 198.51.100.10:80 (connect, nothing sent)"},
		{engine.Violation{Proto: "udp", Daddr: netip.MustParseAddr("198.51.100.10"), Dport: 53, Call: engine.CallSend, Verdict: engine.VerdictDeny, Count: 3},
			"udp 198.51.100.10:53 (x3)"},
		{engine.Violation{Proto: "tcp", Daddr: netip.MustParseAddr("192.0.2.7"), Dport: 443, Verdict: engine.VerdictDeny, Name: "evil.example\x1b[2J"},
			`tcp 192.0.2.7:443 (name evil.example\x1b[2J)`},
		{engine.Violation{Proto: "tcp", Daddr: netip.MustParseAddr("2001:db8::9"), Dport: 8080, Verdict: engine.VerdictDeny, Direction: "in"},
			"in: tcp from 2001:db8::9 to local port 8080"},
		{engine.Violation{Proto: "udp", Daddr: netip.MustParseAddr("198.51.100.10"), Dport: 53, Call: engine.CallConnect, Verdict: engine.VerdictAudit, Direction: "in", Count: 2},
			"in: udp from 198.51.100.10 to local port 53 (x2)"},
	} {
		if got := destination(tc.v); got != tc.want {
			t.Errorf("destination(%+v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}
