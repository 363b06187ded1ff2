package windows

import (
	"net/netip"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

func TestClassify(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	devices := map[string]string{"C:": `\Device\HarddiskVolume3`}
	appPath := func(id string) string { return appIDToPath(id, devices) }
	ruleMeta := filterMeta{Rule: "curl", Exe: curl, Block: true}
	defMeta := filterMeta{Block: true}

	v, ok := classify(drop{Time: now, Proto: protoTCP, Remote: netip.MustParseAddrPort("[::ffff:198.51.100.1]:443"),
		AppID: `\device\harddiskvolume3\windows\system32\curl.exe`, FilterID: 9}, ruleMeta, appPath)
	want := engine.Violation{Time: now, Exe: curl, Comm: "curl.exe", Rule: "curl", Verdict: engine.VerdictDeny,
		Proto: "tcp", Family: "ipv4", Daddr: netip.MustParseAddr("198.51.100.1"), Dport: 443, Direction: "out"}
	if !ok || v != want {
		t.Errorf("rule drop:\n got %+v\nwant %+v", v, want)
	}

	v, ok = classify(drop{Time: now, Proto: protoICMPv6, Remote: netip.MustParseAddrPort("[2001:db8::1]:3"),
		AppID: `\device\harddiskvolume3\tools\ping6.exe`}, defMeta, appPath)
	want = engine.Violation{Time: now, Exe: `C:\tools\ping6.exe`, Comm: "ping6.exe", Verdict: engine.VerdictDeny,
		Proto: "icmp", Family: "ipv6", Daddr: netip.MustParseAddr("2001:db8::1"), Direction: "out"}
	if !ok || v != want {
		t.Errorf("default drop:\n got %+v\nwant %+v", v, want)
	}

	// Inbound: the peer is the address, the port is the program's own.
	v, ok = classify(drop{Time: now, Proto: protoTCP, Remote: netip.MustParseAddrPort("198.51.100.9:51000"),
		Local: netip.MustParseAddrPort("192.168.1.5:8080"), AppID: `\device\harddiskvolume3\windows\system32\curl.exe`},
		filterMeta{Rule: "curl", Exe: curl, Block: true, In: true}, appPath)
	want = engine.Violation{Time: now, Exe: curl, Comm: "curl.exe", Rule: "curl", Verdict: engine.VerdictDeny,
		Proto: "tcp", Family: "ipv4", Daddr: netip.MustParseAddr("198.51.100.9"), Dport: 8080, Direction: "in"}
	if !ok || v != want {
		t.Errorf("inbound drop:\n got %+v\nwant %+v", v, want)
	}

	for _, m := range []filterMeta{{Rule: "x"}, {Rule: "x", Block: true, Audit: true}} {
		if _, ok := classify(drop{Time: now}, m, appPath); ok {
			t.Errorf("%+v: a permit filter cannot drop", m)
		}
	}
}
