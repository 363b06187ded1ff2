package darwin

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

var now = time.Date(2026, 3, 4, 5, 6, 7, 8000, time.UTC)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// pflogPkt crafts a DLT_PFLOG packet byte by byte as xnu writes it: a
// struct pfloghdr (rule numbers big-endian, uid and pid little-endian, as
// an x86 or arm Mac stores them) and an IP packet with a TCP, UDP or ICMP
// header.
type pflogPkt struct {
	action, dir   uint8
	ruleset       string
	rulenr, subnr uint32
	uid, pid      uint32
	src, dst      string
	proto         uint8
	sport, dport  uint16
}

func (p pflogPkt) bytes() []byte {
	h := make([]byte, 64)
	h[0] = 61
	src, dst := ip(p.src), ip(p.dst)
	h[1] = afInet
	if src.Is6() {
		h[1] = afInet6
	}
	h[2], h[3] = p.action, 0
	copy(h[4:20], "en0")
	copy(h[20:35], p.ruleset)
	binary.BigEndian.PutUint32(h[36:], p.rulenr)
	binary.BigEndian.PutUint32(h[40:], p.subnr)
	binary.LittleEndian.PutUint32(h[44:], p.uid)
	binary.LittleEndian.PutUint32(h[48:], p.pid)
	binary.LittleEndian.PutUint32(h[52:], 0) // rule_uid
	binary.LittleEndian.PutUint32(h[56:], 1) // rule_pid
	h[60] = p.dir
	var pkt []byte
	if src.Is4() {
		pkt = make([]byte, 20)
		pkt[0] = 0x45
		pkt[9] = p.proto
		s4, d4 := src.As4(), dst.As4()
		copy(pkt[12:], s4[:])
		copy(pkt[16:], d4[:])
	} else {
		pkt = make([]byte, 40)
		pkt[0] = 0x60
		pkt[6] = p.proto
		s16, d16 := src.As16(), dst.As16()
		copy(pkt[8:], s16[:])
		copy(pkt[24:], d16[:])
	}
	l4 := make([]byte, 8)
	if p.proto == 1 || p.proto == 58 {
		l4[0] = 8 // echo request
	} else {
		binary.BigEndian.PutUint16(l4[0:], p.sport)
		binary.BigEndian.PutUint16(l4[2:], p.dport)
	}
	return append(append(h, pkt...), l4...)
}

const (
	actPass, actBlock = 0, 1
	dirIn, dirOut     = 1, 2
)

func TestParsePflogPacket(t *testing.T) {
	p := pflogPkt{action: actBlock, dir: dirOut, ruleset: "exewall", rulenr: 4, subnr: 12, uid: 501, pid: 4242,
		src: "192.168.1.10", dst: "203.0.113.5", proto: 6, sport: 52144, dport: 443}
	e, err := parsePflogPacket(p.bytes(), now)
	if err != nil {
		t.Fatal(err)
	}
	want := logEntry{Time: now, RuleNr: 4, Ruleset: "exewall", SubNr: 12, UID: 501, HasUID: true, PID: 4242, HasPID: true,
		Action: "block", Dir: "out", Iface: "en0", Proto: "tcp", Saddr: ip("192.168.1.10"), Sport: 52144, Daddr: ip("203.0.113.5"), Dport: 443}
	if e != want {
		t.Errorf("got  %+v\nwant %+v", e, want)
	}
	// No socket found: pf writes UID_MAX and NO_PID; the main ruleset's
	// own rules have subrulenr -1.
	p = pflogPkt{action: actPass, dir: dirOut, rulenr: 3, subnr: 0xffffffff, uid: uidMax, pid: noPID,
		src: "2001:db8::10", dst: "2001:db8:1::5", proto: 17, sport: 5353, dport: 53}
	e, err = parsePflogPacket(p.bytes(), now)
	if err != nil {
		t.Fatal(err)
	}
	if e.HasUID || e.HasPID || e.SubNr != -1 || e.Ruleset != "" || e.Proto != "udp" || e.Dport != 53 || e.Daddr != ip("2001:db8:1::5") {
		t.Errorf("got %+v", e)
	}
	for _, bad := range [][]byte{nil, make([]byte, 30), append([]byte{10}, make([]byte, 70)...)} {
		if _, err := parsePflogPacket(bad, now); err == nil {
			t.Errorf("%d bytes accepted", len(bad))
		}
	}
}

func TestPflogViolation(t *testing.T) {
	labels := map[int]ruleLabel{
		3:  {"backup", engine.VerdictDeny},
		7:  {"trial", engine.VerdictAudit},
		8:  {"trial", engine.VerdictAllow},
		20: {"", engine.VerdictDeny},
	}
	lookup := func(nr int) (ruleLabel, bool) { l, ok := labels[nr]; return l, ok }
	for _, c := range []struct {
		name string
		p    pflogPkt
		want engine.Violation
		ok   bool
	}{
		{"tcp v6 with uid and pid", pflogPkt{actBlock, dirOut, "exewall", 4, 3, 501, 77, "2001:db8::10", "2001:db8:1::5", 6, 61000, 443},
			engine.Violation{Time: now, UID: 501, PID: 77, Rule: "backup", Verdict: engine.VerdictDeny, Proto: "tcp", Family: "ipv6", Daddr: ip("2001:db8:1::5"), Dport: 443}, true},
		{"audited udp", pflogPkt{actPass, dirOut, "exewall", 4, 7, 502, 78, "192.168.1.10", "8.8.8.8", 17, 53000, 53},
			engine.Violation{Time: now, UID: 502, PID: 78, Rule: "trial", Verdict: engine.VerdictAudit, Proto: "udp", Family: "ipv4", Daddr: ip("8.8.8.8"), Dport: 53}, true},
		{"ping, no socket", pflogPkt{actBlock, dirOut, "exewall", 4, 20, uidMax, noPID, "192.168.1.10", "1.1.1.1", 1, 0, 0},
			engine.Violation{Time: now, Verdict: engine.VerdictDeny, Proto: "icmp", Family: "ipv4", Daddr: ip("1.1.1.1")}, true},
		{"unknown rule number", pflogPkt{actPass, dirOut, "exewall", 4, 99, 0, 1, "10.0.0.5", "198.51.100.7", 17, 5000, 9999},
			engine.Violation{Time: now, PID: 1, Verdict: engine.VerdictAudit, Proto: "udp", Family: "ipv4", Daddr: ip("198.51.100.7"), Dport: 9999}, true},
		{"mapped v6", pflogPkt{actBlock, dirOut, "exewall", 4, 3, 0, 9, "::ffff:192.168.1.10", "::ffff:203.0.113.5", 6, 1234, 443},
			engine.Violation{Time: now, PID: 9, Rule: "backup", Verdict: engine.VerdictDeny, Proto: "tcp", Family: "ipv4", Daddr: ip("203.0.113.5"), Dport: 443}, true},
		{"another anchor", pflogPkt{actBlock, dirIn, "ApplicationFire", 4, 0, 0, 1, "203.0.113.9", "192.168.1.10", 6, 51000, 22}, engine.Violation{}, false},
		{"main ruleset", pflogPkt{actBlock, dirOut, "", 3, 0xffffffff, 0, 1, "192.168.1.10", "203.0.113.5", 6, 1, 80}, engine.Violation{}, false},
		{"inbound", pflogPkt{actBlock, dirIn, "exewall", 4, 3, 0, 1, "203.0.113.5", "192.168.1.10", 6, 443, 1234}, engine.Violation{}, false},
		{"an allow rule", pflogPkt{actPass, dirOut, "exewall", 4, 8, 0, 1, "192.168.1.10", "192.0.2.1", 6, 1, 443}, engine.Violation{}, false},
		{"a longer name", pflogPkt{actBlock, dirOut, "exewallx", 4, 3, 0, 1, "192.168.1.10", "192.0.2.1", 6, 1, 443}, engine.Violation{}, false},
	} {
		e, err := parsePflogPacket(c.p.bytes(), now)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := e.Violation(anchorNm, lookup)
		if ok != c.ok || got != c.want {
			t.Errorf("%s:\n got %+v, %v\nwant %+v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

func TestPflogLongAnchorName(t *testing.T) {
	// pflog keeps 15 bytes of an anchor's name.
	p := pflogPkt{actBlock, dirOut, "exewall-testing-anchor", 4, 1, 0, 1, "10.0.0.1", "10.0.0.2", 17, 1, 2}
	e, err := parsePflogPacket(p.bytes(), now)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.Violation("exewall-testing-anchor", nil); !ok {
		t.Error("a truncated anchor name was not recognised")
	}
}

// pcap writes a pcap stream as tcpdump -w does on a little-endian Mac.
func pcap(order binary.ByteOrder, pkts ...[]byte) []byte {
	var b bytes.Buffer
	h := make([]byte, 24)
	order.PutUint32(h[0:], 0xa1b2c3d4)
	order.PutUint16(h[4:], 2)
	order.PutUint16(h[6:], 4)
	order.PutUint32(h[16:], 160)
	order.PutUint32(h[20:], dltPflog)
	b.Write(h)
	for _, p := range pkts {
		r := make([]byte, 16)
		order.PutUint32(r[0:], uint32(now.Unix()))
		order.PutUint32(r[4:], uint32(now.Nanosecond()/1000))
		order.PutUint32(r[8:], uint32(len(p)))
		order.PutUint32(r[12:], uint32(len(p)))
		b.Write(r)
		b.Write(p)
	}
	return b.Bytes()
}

func TestReadPflog(t *testing.T) {
	lookup := func(nr int) (ruleLabel, bool) {
		return map[int]ruleLabel{3: {"backup", engine.VerdictDeny}, 7: {"trial", engine.VerdictAudit}}[nr], nr == 3 || nr == 7
	}
	pkts := [][]byte{
		pflogPkt{actBlock, dirOut, "exewall", 4, 3, 501, 100, "192.168.1.10", "203.0.113.5", 6, 52144, 443}.bytes(),
		pflogPkt{actPass, dirOut, "com.apple.inter", 4, 0, 0, 1, "192.168.2.2", "8.8.8.8", 17, 1, 53}.bytes(),
		{1, 2, 3}, // garbage is skipped
		pflogPkt{actPass, dirOut, "exewall", 4, 7, 502, 101, "192.168.1.10", "8.8.4.4", 17, 53000, 53}.bytes(),
	}
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		out := make(chan engine.Violation, 10)
		if err := readPflog(context.Background(), bytes.NewReader(pcap(order, pkts...)), anchorNm, lookup, out); err != nil {
			t.Fatal(err)
		}
		close(out)
		var got []string
		for v := range out {
			if !v.Time.Equal(now.Truncate(time.Microsecond)) {
				t.Errorf("time %v", v.Time)
			}
			got = append(got, v.Rule+" "+string(v.Verdict)+" "+v.Daddr.String())
		}
		want := "backup deny 203.0.113.5,trial audit 8.8.4.4"
		if strings.Join(got, ",") != want {
			t.Errorf("%v: ReadPflog sent %q, want %q", order, got, want)
		}
	}
	if err := readPflog(context.Background(), strings.NewReader("tcpdump: listening on pflog0\n"), anchorNm, lookup, make(chan engine.Violation)); err == nil {
		t.Error("text accepted as pcap")
	}
}
