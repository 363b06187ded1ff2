package windows

import (
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exewall/exewall/engine"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

const (
	curl   = `C:\Windows\System32\curl.exe`
	ffox   = `C:\Program Files\Mozilla Firefox\firefox.exe`
	rclone = `C:\Tools\rclone.exe`
	self   = `C:\Program Files\exewall\exewall.exe`
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func dest(p string, lo, hi uint16, proto engine.Proto) engine.Dest {
	return engine.Dest{Prefix: pfx(p), PortLo: lo, PortHi: hi, Proto: proto}
}

var testHost = machine{
	Nets:    []netip.Prefix{pfx("203.0.113.7/24"), pfx("192.168.1.5/24"), pfx("2001:db8:1::5/64"), pfx("fe80::1/64")},
	SelfExe: self,
}

var goldenCases = []struct {
	name string
	p    *engine.Policy
	h    machine
}{
	{"allow", &engine.Policy{Default: engine.ActionAllow}, testHost},
	{"allow-noself", &engine.Policy{Default: engine.ActionAllow}, machine{}},
	{"deny", &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "curl", Selector: engine.Selector{Exe: curl}, Action: engine.ActionDeny},
	}}, testHost},
	{"local-only", &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "browser", Selector: engine.Selector{Exe: ffox}, Action: engine.ActionLocalOnly},
	}}, testHost},
	{"default-deny", &engine.Policy{Default: engine.ActionDeny, Rules: []engine.Rule{
		{Name: "browser", Selector: engine.Selector{Exe: ffox}, Action: engine.ActionAllow},
	}}, testHost},
	{"default-local-only", &engine.Policy{Default: engine.ActionLocalOnly}, testHost},
	{"lists", &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "backup", Selector: engine.Selector{Exe: rclone}, Action: engine.ActionDeny,
			Allow: []engine.Dest{
				dest("203.0.113.0/24", 443, 443, engine.ProtoTCP),
				dest("2001:db8::/32", 443, 443, engine.ProtoAny),
				dest("198.51.100.0/24", 0, 0, engine.ProtoAny),
			},
			Deny: []engine.Dest{
				dest("203.0.113.128/25", 0, 0, engine.ProtoAny),
				dest("198.51.100.0/24", 0, 0, engine.ProtoUDP), // equal length: deny first
			}},
		{Name: "browser", Selector: engine.Selector{Exe: ffox}, Action: engine.ActionAllow,
			Deny: []engine.Dest{dest("0.0.0.0/0", 25, 25, engine.ProtoTCP), dest("169.254.169.254/32", 0, 0, engine.ProtoAny)}},
	}}, testHost},
	{"ports-protocols", &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "tool", Selector: engine.Selector{Exe: curl}, Action: engine.ActionDeny,
			Allow: []engine.Dest{
				dest("0.0.0.0/0", 53, 53, engine.ProtoUDP),
				dest("0.0.0.0/0", 8000, 8999, engine.ProtoTCP),
				dest("10.0.0.0/8", 1000, 2000, engine.ProtoAny), // tcp|udp: ICMP has no port
				dest("0.0.0.0/0", 0, 0, engine.ProtoICMP),
				dest("::/0", 0, 0, engine.ProtoICMP),         // ICMPv6 is protocol 58
				dest("192.0.2.0/24", 7, 7, engine.ProtoICMP), // never matches: no filter
			}},
	}}, testHost},
	{"ipv6", &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "v6", Selector: engine.Selector{Exe: curl}, Action: engine.ActionLocalOnly,
			Allow: []engine.Dest{dest("2001:db8::/32", 0, 0, engine.ProtoAny), dest("fd00:ec2::254/128", 80, 80, engine.ProtoTCP)},
			Deny:  []engine.Dest{dest("fd00::/8", 0, 0, engine.ProtoAny), dest("::/0", 22, 22, engine.ProtoTCP)}},
	}}, testHost},
	{"audit-mode", &engine.Policy{Default: engine.ActionLocalOnly, Mode: engine.ModeAudit, Rules: []engine.Rule{
		{Name: "curl", Selector: engine.Selector{Exe: curl}, Action: engine.ActionDeny,
			Allow: []engine.Dest{dest("203.0.113.0/24", 443, 443, engine.ProtoTCP)}},
	}}, testHost},
	{"audit-rule", &engine.Policy{Default: engine.ActionDeny, Rules: []engine.Rule{
		{Name: "curl", Selector: engine.Selector{Exe: curl}, Action: engine.ActionDeny, Audit: true,
			Deny: []engine.Dest{dest("198.51.100.0/24", 0, 0, engine.ProtoAny)}},
		{Name: "browser", Selector: engine.Selector{Exe: ffox}, Action: engine.ActionLocalOnly},
	}}, testHost},
	{"users-groups", &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "ci", Selector: engine.Selector{Group: "ci-runners"}, Action: engine.ActionLocalOnly},
		{Name: "builder", Selector: engine.Selector{User: `BUILD\svc-build`}, Action: engine.ActionDeny},
		{Name: "curl", Selector: engine.Selector{Exe: curl}, Action: engine.ActionAllow},
		{Name: "sid", Selector: engine.Selector{User: "S-1-5-21-1-2-3-1001"}, Action: engine.ActionDeny,
			Allow: []engine.Dest{dest("192.0.2.0/24", 0, 0, engine.ProtoAny)}},
	}}, testHost},
	{"inbound", &engine.Policy{Default: engine.ActionAllow, DefaultInbound: engine.ActionDeny, InboundSet: true, Rules: []engine.Rule{
		{Name: "web", Selector: engine.Selector{Exe: ffox}, Action: engine.ActionDeny,
			Allow: []engine.Dest{
				{Prefix: pfx("0.0.0.0/0"), PortLo: 443, PortHi: 443, Proto: engine.ProtoTCP, Dir: engine.DirIn},
				{Prefix: pfx("::/0"), PortLo: 443, PortHi: 443, Proto: engine.ProtoTCP, Dir: engine.DirIn},
				{Prefix: pfx("203.0.113.0/24"), PortLo: 5432, PortHi: 5432, Proto: engine.ProtoTCP, Dir: engine.DirOut},
				dest("10.0.0.0/8", 0, 0, engine.ProtoAny),
			}},
		{Name: "lan", Selector: engine.Selector{Exe: rclone}, Action: engine.ActionLocalOnly},
	}}, testHost},
	{"refuse-cgroup", &engine.Policy{Rules: []engine.Rule{
		{Name: "web", Selector: engine.Selector{Cgroup: "/system.slice/nginx.service"}, Action: engine.ActionLocalOnly},
	}}, testHost},
	{"refuse-many", &engine.Policy{Rules: []engine.Rule{
		{Name: "uid", Selector: engine.Selector{User: "1000"}, Action: engine.ActionDeny},
		{Name: "gid", Selector: engine.Selector{Group: "100"}, Action: engine.ActionDeny},
		{Name: "linux", Selector: engine.Selector{Exe: "/usr/bin/curl"}, Action: engine.ActionDeny},
		{Name: "a", Selector: engine.Selector{Exe: curl}, Action: engine.ActionDeny},
		{Name: "b", Selector: engine.Selector{Exe: strings.ToLower(strings.ReplaceAll(curl, `\`, "/"))}, Action: engine.ActionDeny},
		{Name: "none", Action: engine.ActionDeny},
		{Name: "two", Selector: engine.Selector{Exe: ffox, User: "bob"}, Action: engine.ActionDeny},
	}}, testHost},
}

func render(fs []filter, err error) string {
	var b strings.Builder
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(&b, "error: %s\n", line)
		}
		return b.String()
	}
	for _, f := range fs {
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func TestTranslateGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			fs, err := translate(tc.p, tc.h)
			got := render(fs, err)
			file := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run go test ./windows/ -run Golden -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs; got:\n%s\nwant:\n%s", file, got, want)
			}
		})
	}
}

func TestRefusalsWrapNotSupported(t *testing.T) {
	for _, sel := range []engine.Selector{{Cgroup: "/a"}, {User: "1000"}, {Group: "0"}} {
		_, err := translate(&engine.Policy{Rules: []engine.Rule{{Name: "r", Selector: sel}}}, machine{})
		if !errors.Is(err, engine.ErrNotSupported) {
			t.Errorf("%+v: got %v, want an error wrapping engine.ErrNotSupported", sel, err)
		}
	}
	// Invalid input is refused, but it is not a missing feature.
	_, err := translate(&engine.Policy{Rules: []engine.Rule{{Name: "r", Selector: engine.Selector{Exe: "curl.exe"}}}}, machine{})
	if err == nil || errors.Is(err, engine.ErrNotSupported) {
		t.Errorf("relative exe: got %v, want a plain refusal", err)
	}
}

func TestWeightsUniqueDescending(t *testing.T) {
	for _, tc := range goldenCases {
		fs, err := translate(tc.p, tc.h)
		if err != nil {
			continue
		}
		for i := 1; i < len(fs); i++ {
			if fs[i].Weight >= fs[i-1].Weight {
				t.Fatalf("%s: weight %d after %d", tc.name, fs[i].Weight, fs[i-1].Weight)
			}
		}
		if fs[len(fs)-1].Weight != 1 {
			t.Errorf("%s: lowest weight %d, want 1", tc.name, fs[len(fs)-1].Weight)
		}
	}
}

// wfpJudge is WFP's arbitration inside exewall's sublayer, reduced to what
// Translate emits: the matching filter of the highest weight decides. The
// attempt comes from an ephemeral local port (for ICMP: an echo request)
// of a process running as no account a filter names.
func wfpJudge(fs []filter, exe string, dst netip.Addr, port uint16, proto engine.Proto) (filter, bool) {
	local := uint16(50000)
	if proto == engine.ProtoICMP {
		local = 8
		if !dst.Unmap().Is4() {
			local = 128
		}
	}
	return wfpJudgeFrom(fs, attempt{exe: exe, dst: dst, port: port, proto: proto, local: local})
}

// attempt is one connection attempt as the ALE connect layers (in: the
// receive/accept layers) see it.
type attempt struct {
	exe     string
	account string // SID of the token's user or of one of its groups
	dst     netip.Addr
	port    uint16 // remote port
	local   uint16 // local port, or ICMP type
	proto   engine.Proto
	in      bool // accepted: dst is the peer
}

func wfpJudgeFrom(fs []filter, a attempt) (filter, bool) {
	exe, dst, port, proto := a.exe, a.dst.Unmap(), a.port, a.proto
	l := layerOf(netip.PrefixFrom(dst, 0), a.in)
	var num uint8
	switch proto {
	case engine.ProtoTCP:
		num = protoTCP
	case engine.ProtoUDP:
		num = protoUDP
	case engine.ProtoICMP:
		num = protoICMP
		if l.v6() {
			num = protoICMPv6
		}
	}
	var best filter
	found := false
	for _, f := range fs {
		if f.Layer != l || (found && f.Weight <= best.Weight) {
			continue
		}
		if acct := f.User + f.Group; acct != "" && acct != a.account {
			continue
		}
		if f.Exe != "" && !strings.EqualFold(f.Exe, exe) {
			continue
		}
		if f.Remote.IsValid() && !f.Remote.Contains(dst) {
			continue
		}
		if len(f.Protos) > 0 && !containsProto(f.Protos, num) {
			continue
		}
		if (f.PortLo != 0 || f.PortHi != 0) && (port < f.PortLo || port > f.PortHi) {
			continue
		}
		if (f.LocalLo != 0 || f.LocalHi != 0) && (a.local < f.LocalLo || a.local > f.LocalHi) {
			continue
		}
		best, found = f, true
	}
	return best, found
}

func containsProto(ps []uint8, p uint8) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

type fakeResolver map[string]engine.FileID

func (r fakeResolver) Identify(p string) (engine.FileID, bool, error) {
	id, ok := r[p]
	return id, ok, nil
}

// TestTranslateMatchesEvaluator checks the filters against the engine's
// reference evaluator on random policies and random connection attempts:
// the weights must reproduce "most specific prefix first, deny before allow
// at equal length, then the rule's action, then the default".
func TestTranslateMatchesEvaluator(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	exes := []string{curl, ffox, rclone, `C:\x\other.exe`}
	res := fakeResolver{}
	for i, e := range exes {
		res[e] = engine.FileID{Ino: uint64(i + 1)}
	}
	pool := []string{
		"0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "203.0.113.0/24", "203.0.113.128/25",
		"169.254.169.254/32", "169.254.0.0/16", "192.0.2.1/32",
		"::/0", "2001:db8::/32", "2001:db8:1::/48", "fd00::/8", "fd00:ec2::254/128", "fe80::/10",
	}
	probes := []string{
		"10.1.2.3", "10.9.9.9", "203.0.113.5", "203.0.113.200", "169.254.169.254", "169.254.1.1",
		"192.0.2.1", "198.51.100.1", "127.0.0.1", "192.168.1.9", "8.8.8.8",
		"2001:db8:1::1", "2001:db8:2::1", "fd00:ec2::254", "fd00::1", "fe80::1", "::1", "2606:4700::1",
		"::ffff:10.1.2.3", "::ffff:8.8.8.8",
	}
	protos := []engine.Proto{engine.ProtoAny, engine.ProtoTCP, engine.ProtoUDP, engine.ProtoICMP}
	ports := [][2]uint16{{0, 0}, {443, 443}, {53, 53}, {1000, 2000}, {22, 443}}
	actions := []engine.Action{engine.ActionAllow, engine.ActionDeny, engine.ActionLocalOnly}
	randDests := func() []engine.Dest {
		var ds []engine.Dest
		for n := rng.Intn(4); n > 0; n-- {
			pr := ports[rng.Intn(len(ports))]
			d := dest(pool[rng.Intn(len(pool))], pr[0], pr[1], protos[rng.Intn(len(protos))])
			d.Dir = engine.Direction(rng.Intn(3))
			ds = append(ds, d)
		}
		return ds
	}
	checked := 0
	for iter := 0; iter < 300; iter++ {
		p := &engine.Policy{Default: actions[rng.Intn(3)], Mode: engine.Mode(rng.Intn(4) / 3), DefaultInbound: actions[rng.Intn(3)]}
		for i, e := range exes[:3] {
			if rng.Intn(3) == 0 {
				continue
			}
			p.Rules = append(p.Rules, engine.Rule{
				Name: fmt.Sprintf("r%d", i), Selector: engine.Selector{Exe: e},
				Action: actions[rng.Intn(3)], Audit: rng.Intn(5) == 0,
				Allow: randDests(), Deny: randDests(),
			})
		}
		fs, err := translate(p, testHost)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := engine.NewEvaluator(p, res, testHost.Nets)
		if err != nil {
			t.Fatal(err)
		}
		for _, exe := range exes {
			s := engine.Subject{Exe: res[exe], HasExe: true}
			for _, a := range probes {
				dst := netip.MustParseAddr(a)
				for _, proto := range protos[1:] {
					for _, port := range []uint16{0, 22, 53, 443, 1500, 8080} {
						if proto == engine.ProtoICMP {
							port = 0
						}
						want := ev.Evaluate(s, dst, port, proto)
						f, ok := wfpJudge(fs, exe, dst, port, proto)
						if !ok {
							t.Fatalf("no filter matched %s %s %s:%d", exe, proto, dst, port)
						}
						if f.Verdict() != want.Verdict || f.Rule != want.Rule {
							t.Fatalf("policy %+v\n%s %s %s:%d: filter %q gives %s/%q, evaluator %s/%q\n%s",
								p, exe, proto, dst, port, f.Name, f.Verdict(), f.Rule, want.Verdict, want.Rule, render(fs, nil))
						}
						// Inbound: dst is the peer (from an ephemeral port),
						// port the local port (for ICMP an echo request).
						in := attempt{exe: exe, dst: dst, port: 50000, local: port, proto: proto, in: true}
						if proto == engine.ProtoICMP {
							in.port, in.local = 0, 8
							if !dst.Unmap().Is4() {
								in.local = 128
							}
						}
						want = ev.Judge(s, engine.Attempt{Dir: engine.DirIn, Addr: dst, Port: port, Proto: proto})
						f, ok = wfpJudgeFrom(fs, in)
						if !ok || f.Verdict() != want.Verdict || f.Rule != want.Rule {
							t.Fatalf("policy %+v\n%s accepting %s from %s on %d: filter %q gives %s/%q, evaluator %s/%q\n%s",
								p, exe, proto, dst, port, f.Name, f.Verdict(), f.Rule, want.Verdict, want.Rule, render(fs, nil))
						}
						checked += 2
					}
				}
			}
		}
	}
	t.Logf("%d attempts agree", checked)
}

func TestSelfNeverBlocked(t *testing.T) {
	p := &engine.Policy{Default: engine.ActionDeny}
	fs, err := translate(p, testHost)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"8.8.8.8", "127.0.0.1", "::1", "2606:4700::1"} {
		f, _ := wfpJudge(fs, self, netip.MustParseAddr(a), 443, engine.ProtoTCP)
		if f.Action != actionPermit {
			t.Errorf("own service to %s: %s", a, f)
		}
		f, _ = wfpJudge(fs, curl, netip.MustParseAddr(a), 443, engine.ProtoTCP)
		if f.Action != actionBlock {
			t.Errorf("curl to %s under default deny: %s", a, f)
		}
	}
}

// TestSystemPermits: under default deny (and local-only), Windows keeps its
// addresses and resolves names: DHCP, DHCPv6, router and neighbour
// solicitations and DNS from the DNS Client service pass; the same packets
// from an ordinary program's ports, and that program's own DNS, do not.
func TestSystemPermits(t *testing.T) {
	dnscache := serviceSID("Dnscache")
	for _, def := range []engine.Action{engine.ActionDeny, engine.ActionLocalOnly} {
		p := &engine.Policy{Default: def, DefaultInbound: def, InboundSet: true, Rules: []engine.Rule{
			{Name: "svc", Selector: engine.Selector{User: `NT SERVICE\Other`}, Action: engine.ActionDeny},
		}}
		fs, err := translate(p, testHost)
		if err != nil {
			t.Fatal(err)
		}
		svchost := `C:\Windows\System32\svchost.exe`
		for _, tc := range []struct {
			name string
			a    attempt
			pass bool
		}{
			{"dhcp discover", attempt{exe: svchost, dst: netip.MustParseAddr("255.255.255.255"), port: 67, local: 68, proto: engine.ProtoUDP}, true},
			{"dhcp renew", attempt{exe: svchost, dst: netip.MustParseAddr("198.51.100.1"), port: 67, local: 68, proto: engine.ProtoUDP}, true},
			{"dhcpv6 solicit", attempt{exe: svchost, dst: netip.MustParseAddr("ff02::1:2"), port: 547, local: 546, proto: engine.ProtoUDP}, true},
			{"router solicitation", attempt{exe: svchost, dst: netip.MustParseAddr("ff02::2"), local: 133, proto: engine.ProtoICMP}, true},
			{"neighbour solicitation", attempt{exe: svchost, dst: netip.MustParseAddr("ff02::1:ff00:1"), local: 135, proto: engine.ProtoICMP}, true},
			{"neighbour advertisement", attempt{exe: svchost, dst: netip.MustParseAddr("2606:4700::1"), local: 136, proto: engine.ProtoICMP}, true},
			{"dnscache udp", attempt{exe: svchost, account: dnscache, dst: netip.MustParseAddr("8.8.8.8"), port: 53, local: 50000, proto: engine.ProtoUDP}, true},
			{"dnscache tcp v6", attempt{exe: svchost, account: dnscache, dst: netip.MustParseAddr("2001:4860:4860::8888"), port: 53, local: 50000, proto: engine.ProtoTCP}, true},
			{"program's own dns", attempt{exe: curl, dst: netip.MustParseAddr("8.8.8.8"), port: 53, local: 50000, proto: engine.ProtoUDP}, false},
			{"dnscache elsewhere", attempt{exe: svchost, account: dnscache, dst: netip.MustParseAddr("8.8.8.8"), port: 443, local: 50000, proto: engine.ProtoTCP}, false},
			{"other port to 67", attempt{exe: curl, dst: netip.MustParseAddr("198.51.100.1"), port: 67, local: 50000, proto: engine.ProtoUDP}, false},
			{"ping", attempt{exe: curl, dst: netip.MustParseAddr("2606:4700::1"), local: 128, proto: engine.ProtoICMP}, false},
			{"dhcp offer in", attempt{exe: svchost, dst: netip.MustParseAddr("198.51.100.1"), port: 67, local: 68, proto: engine.ProtoUDP, in: true}, true},
			{"dhcpv6 advertise in", attempt{exe: svchost, dst: netip.MustParseAddr("fe80::1"), port: 547, local: 546, proto: engine.ProtoUDP, in: true}, true},
			{"router advertisement in", attempt{exe: svchost, dst: netip.MustParseAddr("fe80::1"), local: 134, proto: engine.ProtoICMP, in: true}, true},
			{"server in", attempt{exe: curl, dst: netip.MustParseAddr("198.51.100.1"), port: 50000, local: 8080, proto: engine.ProtoTCP, in: true}, false},
		} {
			f, _ := wfpJudgeFrom(fs, tc.a)
			if (f.Action == actionPermit) != tc.pass {
				t.Errorf("default %s, %s: decided by %s", def, tc.name, f)
			}
		}
	}
}

// TestUserRulesJudged: user: and group: filters, by SID, against the
// evaluator's choice of rule (uid/gid stand-ins for the SIDs).
func TestUserRulesJudged(t *testing.T) {
	p := &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "builder", Selector: engine.Selector{User: "S-1-5-21-1-2-3-1001"}, Action: engine.ActionDeny,
			Allow: []engine.Dest{dest("192.0.2.0/24", 0, 0, engine.ProtoAny)}},
		{Name: "ci", Selector: engine.Selector{Group: "S-1-5-21-1-2-3-1200"}, Action: engine.ActionLocalOnly},
	}}
	fs, err := translate(p, testHost)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		acct, dst, rule string
		block           bool
	}{
		{"S-1-5-21-1-2-3-1001", "192.0.2.9", "builder", false},
		{"S-1-5-21-1-2-3-1001", "8.8.8.8", "builder", true},
		{"S-1-5-21-1-2-3-1200", "10.1.2.3", "ci", false},
		{"S-1-5-21-1-2-3-1200", "8.8.8.8", "ci", true},
		{"S-1-5-21-1-2-3-1002", "8.8.8.8", "", false},
	} {
		f, _ := wfpJudgeFrom(fs, attempt{exe: curl, account: tc.acct, dst: netip.MustParseAddr(tc.dst), port: 443, local: 50000, proto: engine.ProtoTCP})
		if f.Rule != tc.rule || (f.Action == actionBlock) != tc.block {
			t.Errorf("%s to %s: decided by %s", tc.acct, tc.dst, f)
		}
	}
}

func TestHostNets(t *testing.T) {
	got := hostNets([]netip.Prefix{
		pfx("203.0.113.7/24"), pfx("203.0.113.9/24"), // one subnet
		pfx("10.1.2.3/16"),    // inside 10.0.0.0/8: nothing new
		pfx("fe80::1/64"),     // inside fe80::/10
		pfx("2001:db8::5/64"), //
		pfx("0.0.0.0/0"),      // dropped
		pfx("8.0.0.0/7"),      //
		{},                    // invalid
	})
	want := []netip.Prefix{pfx("8.0.0.0/7"), pfx("203.0.113.0/24"), pfx("2001:db8::/64")}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestMetaRoundTrip(t *testing.T) {
	fs, err := translate(goldenCases[2].p, testHost)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		m := metaOf(f, `\device\harddiskvolume3\windows\system32\curl.exe`)
		got, err := decodeMeta(m.encode())
		if err != nil || got != m {
			t.Errorf("round trip of %v: %+v, %v", m, got, err)
		}
	}
	if _, err := decodeMeta([]byte(`{"rule":"x"}`)); err == nil {
		t.Error("meta without spec accepted")
	}
	if _, err := decodeMeta(nil); err == nil {
		t.Error("empty provider data accepted")
	}
}

func TestNetsChange(t *testing.T) {
	a := []netip.Prefix{pfx("203.0.113.7/24"), pfx("2001:db8::5/64")}
	b := []netip.Prefix{pfx("2001:db8::9/64"), pfx("203.0.113.8/24"), pfx("10.0.0.2/8")} // same subnets, a private one more
	if !sameNets(a, b) {
		t.Error("a new address in known or private subnets must not re-apply")
	}
	if sameNets(a, append(b, pfx("198.51.100.1/24"))) {
		t.Error("a new public subnet must re-apply")
	}
	if usesLocalOnly(&engine.Policy{Default: engine.ActionDeny, Rules: []engine.Rule{{Action: engine.ActionAllow}}}) {
		t.Error("no local-only verdict")
	}
	if !usesLocalOnly(&engine.Policy{Rules: []engine.Rule{{Action: engine.ActionLocalOnly}}}) {
		t.Error("a local-only rule")
	}
}
