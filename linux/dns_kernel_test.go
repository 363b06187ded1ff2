//go:build linux

package linux

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/test/kerneltest"
)

// dnsSetup is a backend on a scratch cgroup, a test DNS server trusted by
// the policy, the test forwarder, and a client copy ruled by names.
type dnsSetup struct {
	tb     *testBackend
	dns    *testDNS
	fwd    *testForwarder
	client string
	zone   *kerneltest.Zone
}

func newDNSSetup(t *testing.T) *dnsSetup {
	t.Helper()
	requireKernel(t)
	cg := scratchCgroup(t)
	tb := newTestBackend(t, cg)
	zone := kerneltest.NewZone(300)
	s := &dnsSetup{tb: tb, zone: zone, dns: startTestDNS(t, zone), client: clientCopy(t, t.TempDir(), "dnsclient")}
	s.fwd = startTestForwarder(t, tb.Backend)
	return s
}

func mustName(t *testing.T, s string) engine.Dest {
	t.Helper()
	n, err := engine.ParseName(s)
	if err != nil {
		t.Fatal(err)
	}
	return engine.Dest{Name: n}
}

// policy is a deny rule for the client allowing dests, trusting the test
// server.
func (s *dnsSetup) policy(allow ...engine.Dest) *engine.Policy {
	return &engine.Policy{Resolvers: []netip.AddrPort{s.dns.addr4, s.dns.addr6},
		Rules: []engine.Rule{{Name: "names", Selector: engine.Selector{Exe: s.client}, Action: engine.ActionDeny, Allow: allow}}}
}

func (s *dnsSetup) set(name string, addrs ...string) {
	for _, a := range addrs {
		s.zone.Set(name, netip.MustParseAddr(a))
	}
}

// a4 and a6 are host i of the test's namespace (kerneltest.Net): the
// addresses the test's DNS server answers.
func (s *dnsSetup) a4(i int) string { return s.dns.net.Addr4(i).String() }
func (s *dnsSetup) a6(i int) string { return s.dns.net.Addr6(i).String() }

func (s *dnsSetup) ask(name string) dnsAsk {
	return dnsAsk{Server: s.dns.addr4.String(), Net: "udp4", Name: name, ConnectPort: 443}
}

func wantConnect(t *testing.T, what string, g dnsGot, want string) {
	t.Helper()
	if g.Err != "" || len(g.Connect) == 0 {
		t.Fatalf("%s: lookup %+v", what, g)
	}
	for i, c := range g.Connect {
		if (want == "EPERM") != (c == "EPERM") {
			t.Errorf("%s: connect to %s: %s, want %s", what, g.Addrs[i], c, want)
		}
	}
}

// TestDNSExactName: a name entry allows the addresses the program was
// answered for that name, from the first connect; other addresses stay
// denied; the reply comes from the server the program asked.
func TestDNSExactName(t *testing.T) {
	s := newDNSSetup(t)
	s.set("api.example.test", s.a4(10))
	s.set("other.example.test", s.a4(11))
	s.tb.apply(t, s.policy(mustName(t, "api.example.test")))
	got := runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{s.ask("api.example.test"), s.ask("other.example.test")})
	wantConnect(t, "api.example.test", got[0], "ok")
	wantConnect(t, "other.example.test", got[1], "EPERM")
	if got[0].Peer != s.dns.addr4.String() {
		t.Errorf("getpeername of the DNS socket = %s, want %s", got[0].Peer, s.dns.addr4)
	}
	if n := s.dns.zone.Queries(); n != 2 {
		t.Errorf("server saw %d queries, want 2", n)
	}
}

// TestDNSWildcardFamiliesTransports: *.NAME matches below it at any depth,
// not the apex; A and AAAA; queries over UDP (connected, unconnected,
// dual-stack IPv4-mapped, IPv6) and TCP all pass through the forwarder and
// see the server they asked.
func TestDNSWildcardFamiliesTransports(t *testing.T) {
	s := newDNSSetup(t)
	s.set("a.wild.test", s.a4(20), s.a6(0x20))
	s.set("x.y.wild.test", s.a4(21))
	s.set("wild.test", s.a4(22))
	s.set("v6.wild.test", s.a6(0x23))
	s.set("tcp.wild.test", s.a4(24))
	s.set("un.wild.test", s.a4(25))
	s.set("mapped.wild.test", s.a4(26))
	s.set("six.wild.test", s.a4(27))
	s.set("tcp6.wild.test", s.a6(0x28))
	s.set("cmapped.wild.test", s.a4(29))
	s.tb.apply(t, s.policy(mustName(t, "*.wild.test")))
	v4, v6 := s.dns.addr4.String(), s.dns.addr6.String()
	asks := []dnsAsk{
		s.ask("a.wild.test"),
		{Server: v4, Net: "udp4", Name: "a.wild.test", AAAA: true, ConnectPort: 443},
		s.ask("x.y.wild.test"),
		s.ask("wild.test"),
		{Server: v4, Net: "udp4", Name: "v6.wild.test", AAAA: true, ConnectPort: 443},
		{Server: v4, Net: "tcp", Name: "tcp.wild.test", ConnectPort: 443, ConnectTCP: true},
		{Server: v4, Net: "udp4", Unconnected: true, Name: "un.wild.test", ConnectPort: 443},
		{Server: v4, Net: "udp", Unconnected: true, Name: "mapped.wild.test", ConnectPort: 443},
		{Server: v6, Net: "udp6", Name: "six.wild.test", ConnectPort: 443},
		{Server: v6, Net: "tcp", Name: "tcp6.wild.test", AAAA: true, ConnectPort: 443},
		{Server: v4, Net: "mapped", Name: "cmapped.wild.test", ConnectPort: 443},
	}
	fast0, egress0, diag0 := originByFast.Load(), originByEgress.Load(), originByDiag.Load()
	got := runDNSClient(t, s.client, s.tb.cgroup, asks)
	// Every query's asker was found by the egress hook's records: a UDP one
	// by its fast record (mmap, no syscall), a TCP one by dns_peers; none
	// by sock_diag (the slow path, for records evicted).
	tcp := 0
	for _, a := range asks {
		if a.Net == "tcp" {
			tcp++
		}
	}
	f, e, d := originByFast.Load()-fast0, originByEgress.Load()-egress0, originByDiag.Load()-diag0
	if f != uint64(len(asks)-tcp) || e != uint64(tcp) || d != 0 {
		t.Errorf("origin found by fast record %d times, by egress record %d, by sock_diag %d, want %d, %d and 0", f, e, d, len(asks)-tcp, tcp)
	}
	wantConnect(t, "A a.wild.test", got[0], "ok")
	wantConnect(t, "AAAA a.wild.test", got[1], "ok")
	wantConnect(t, "x.y.wild.test", got[2], "ok")
	wantConnect(t, "apex wild.test", got[3], "EPERM")
	wantConnect(t, "AAAA v6.wild.test", got[4], "ok")
	wantConnect(t, "TCP tcp.wild.test", got[5], "ok")
	wantConnect(t, "unconnected un.wild.test", got[6], "ok")
	wantConnect(t, "dual-stack mapped.wild.test", got[7], "ok")
	wantConnect(t, "IPv6 server six.wild.test", got[8], "ok")
	wantConnect(t, "TCP IPv6 server tcp6.wild.test", got[9], "ok")
	wantConnect(t, "dual-stack connected to IPv4-mapped", got[10], "ok")
	if want := "[::ffff:" + s.dns.addr4.Addr().String() + "]:53"; got[10].Peer != want || got[10].From != want {
		t.Errorf("dual-stack connected: getpeername %q, reply from %q, want %s", got[10].Peer, got[10].From, want)
	}
	for i, want := range map[int]string{0: v4, 5: v4, 8: v6, 9: v6} {
		if got[i].Peer != want {
			t.Errorf("ask %d: getpeername %q, want %s", i, got[i].Peer, want)
		}
	}
	if got[6].From != v4 {
		t.Errorf("unconnected reply from %q, want %s", got[6].From, v4)
	}
	if want := "[::ffff:" + s.dns.addr4.Addr().String() + "]:53"; got[7].From != want {
		t.Errorf("dual-stack reply from %q, want %s", got[7].From, want)
	}
	if n := s.zone.Queries(); n != int64(len(asks)) {
		t.Errorf("server saw %d queries, want %d", n, len(asks))
	}
}

// TestDNSFirstConnect: the connect right after each answer is allowed, 100
// times of 100 (fresh names and addresses each round).
func TestDNSFirstConnect(t *testing.T) {
	s := newDNSSetup(t)
	var asks []dnsAsk
	for i := range 100 {
		name := fmt.Sprintf("r%d.first.test", i)
		s.set(name, s.dns.net.Addr4(100+i).String()) // a host of the test's namespace
		a := s.ask(name)
		a.ConnectTCP = i%2 == 1 // half TCP (refused there: nothing listens), half UDP
		a.ConnectPort = 9
		asks = append(asks, a)
	}
	s.tb.apply(t, s.policy(mustName(t, "*.first.test")))
	got := runDNSClient(t, s.client, s.tb.cgroup, asks)
	allowed := 0
	for i, g := range got {
		if g.Err == "" && len(g.Connect) == 1 && g.Connect[0] != "EPERM" {
			allowed++
		} else {
			t.Errorf("round %d: %+v", i, g)
		}
	}
	t.Logf("first connect allowed in %d of 100 rounds", allowed)
}

// TestDNSPerRuleAndUntrusted: an address another rule looked up is not
// allowed for this rule; an answer from a server that is not a trusted
// resolver teaches nothing (the query is an ordinary connection: here
// allowed by a CIDR entry, and its answer does not allow the address); the
// query goes to the server the program asked.
func TestDNSPerRuleAndUntrusted(t *testing.T) {
	s := newDNSSetup(t)
	other := clientCopy(t, t.TempDir(), "dnsother")
	s.set("shared.per.test", s.a4(40))
	s.set("own.per.test", s.a4(41))
	rogueZone := kerneltest.NewZone(300)
	rogueZone.Set("own.per.test", s.dns.net.Addr4(41))
	rogue := startTestDNS(t, rogueZone)
	second := startTestDNS(t, s.zone)
	p := s.policy(mustName(t, "shared.per.test"), mustName(t, "own.per.test"),
		engine.Dest{Prefix: netip.PrefixFrom(rogue.addr4.Addr(), 32), PortLo: 53, PortHi: 53})
	p.Resolvers = append(p.Resolvers, second.addr4)
	p.Rules = append(p.Rules, engine.Rule{Name: "other", Selector: engine.Selector{Exe: other}, Action: engine.ActionDeny,
		Allow: []engine.Dest{mustName(t, "shared.per.test")}})
	s.tb.apply(t, p)

	// The other rule looks shared up; this one connects without looking.
	got := runDNSClient(t, other, s.tb.cgroup, []dnsAsk{s.ask("shared.per.test")})
	wantConnect(t, "other rule's lookup", got[0], "ok")
	got = runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{{Direct: s.a4(40), ConnectPort: 443}})
	wantConnect(t, "address another rule looked up", got[0], "EPERM")

	// The untrusted server answers, and the answer allows nothing.
	before := rogueZone.Queries()
	got = runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{{Server: rogue.addr4.String(), Net: "udp4", Name: "own.per.test", ConnectPort: 443}})
	wantConnect(t, "answer of an untrusted server", got[0], "EPERM")
	if rogueZone.Queries() != before+1 {
		t.Errorf("the untrusted server was not asked")
	}

	// A second trusted server: the query reaches it, not the first.
	first := s.zone.Queries()
	srv2 := second.addr4.String()
	got = runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{{Server: srv2, Net: "udp4", Name: "own.per.test", ConnectPort: 443}})
	wantConnect(t, "lookup through the second server", got[0], "ok")
	if got[0].Peer != srv2 {
		t.Errorf("getpeername %q, want %s", got[0].Peer, srv2)
	}
	if n := s.zone.Queries() - first; n != 1 {
		t.Errorf("zone saw %d queries, want 1", n)
	}
}

// TestDNSExpiryAndForwarderDown: a binding whose TTL ran out no longer
// allows its address; with the forwarder gone, lookups fail and nothing is
// allowed.
func TestDNSExpiryAndForwarderDown(t *testing.T) {
	s := newDNSSetup(t)
	s.zone.SetTTL(1)
	s.set("brief.exp.test", s.a4(50))
	s.set("late.exp.test", s.a4(51))
	s.tb.apply(t, s.policy(mustName(t, "*.exp.test")))
	got := runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{s.ask("brief.exp.test"),
		{Direct: s.a4(50), ConnectPort: 443, Sleep: 2500 * time.Millisecond}})
	wantConnect(t, "within the TTL", got[0], "ok")
	wantConnect(t, "after the TTL", got[1], "EPERM")

	s.fwd.stop()
	got = runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{s.ask("late.exp.test"),
		{Server: s.dns.addr4.String(), Net: "tcp", Name: "late.exp.test", ConnectPort: 443},
		{Direct: s.a4(51), ConnectPort: 443}})
	if got[0].Err == "" || got[1].Err == "" {
		t.Errorf("lookups with the forwarder down: %+v", got[:2])
	}
	wantConnect(t, "forwarder down", got[2], "EPERM")

	// No forwarder at all (the daemon stopped it): refused at once.
	if err := s.tb.SetForwarder(netip.AddrPort{}, netip.AddrPort{}, netip.AddrPort{}, netip.AddrPort{}, 0); err != nil {
		t.Fatal(err)
	}
	got = runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{s.ask("late.exp.test")})
	if got[0].Err != "EPERM" {
		t.Errorf("lookup without a forwarder: %+v, want EPERM", got[0])
	}
}

// TestDNSViolationName: a deny name entry denies the bound address, and
// the violation names the entry.
func TestDNSViolationName(t *testing.T) {
	s := newDNSSetup(t)
	s.set("bad.vio.test", s.a4(60))
	p := s.policy()
	p.Rules[0].Action = engine.ActionAllow
	p.Rules[0].Deny = []engine.Dest{mustName(t, "bad.vio.test")}
	s.tb.apply(t, p)
	got := runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{s.ask("bad.vio.test")})
	wantConnect(t, "denied name", got[0], "EPERM")
	v := waitViolation(t, s.tb.Backend, func(v engine.Violation) bool { return v.Daddr == s.dns.net.Addr4(60) })
	if v.Name != "bad.vio.test" || v.Rule != "names" {
		t.Errorf("violation %+v, want name bad.vio.test", v)
	}
}

// TestDNSGlibc: a real glibc getaddrinfo (python3), reading a test
// resolv.conf bind-mounted in a mount namespace of its own, resolves
// through exewall and connects to a name entry's address; another name's
// address stays denied.
func TestDNSGlibc(t *testing.T) {
	s := newDNSSetup(t)
	python, err := filepath.EvalSymlinks("/usr/bin/python3")
	if err != nil {
		kerneltest.Skipf(t, "no /usr/bin/python3: %v", err)
	}
	kerneltest.RequireTool(t, "unshare")
	s.set("py.glibc.test", s.a4(70))
	s.set("no.glibc.test", s.a4(71))
	p := s.policy(mustName(t, "py.glibc.test"))
	p.Rules[0].Exe = python
	s.tb.apply(t, p)

	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver "+s.dns.addr4.Addr().String()+"\noptions timeout:2 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `import socket, sys
for name in sys.argv[1:]:
    try:
        addr = socket.getaddrinfo(name, 443, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0]
    except Exception as e:
        print(name, "lookup", e); continue
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((addr, 443)); print(name, "ok", addr)
    except PermissionError:
        print(name, "EPERM", addr)
`
	cgfd, err := os.Open(s.tb.cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer cgfd.Close()
	cmd := exec.Command("unshare", "-m", "sh", "-c", `mount --bind "$0" /etc/resolv.conf && exec "$1" -c "$2" py.glibc.test no.glibc.test`, conf, python, script)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v: %s", err, out)
	}
	got := string(out)
	if !strings.Contains(got, "py.glibc.test ok "+s.a4(70)) || !strings.Contains(got, "no.glibc.test EPERM "+s.a4(71)) {
		t.Errorf("glibc lookups and connects:\n%s", got)
	}
	if s.zone.Queries() < 2 {
		t.Errorf("the test server saw %d queries", s.zone.Queries())
	}
}

// TestDNSHeldConnections: a binding's expiry does not cut a connection
// made while it held; a policy change re-judges held connections with the
// bindings in force: kept while a name entry still allows them, cut when
// the name entry goes.
func TestDNSHeldConnections(t *testing.T) {
	s := newDNSSetup(t)
	echo := listenEcho(t)
	s.set("brief.hold.test", "127.0.0.1")
	s.set("long.hold.test", "127.0.0.1")
	p := s.policy(mustName(t, "*.hold.test"))
	s.tb.apply(t, p)

	// Expiry: the address is no longer bound, the connection stays.
	s.zone.SetTTL(1)
	brief := startHoldClient(t, s.client, s.tb.cgroup, dnsAsk{Server: s.dns.addr4.String(), Net: "udp4", Name: "brief.hold.test", ConnectPort0: echo})
	for deadline := time.Now().Add(10 * time.Second); len(s.tb.Bindings()) > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("binding never expired: %+v", s.tb.Bindings())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := brief.probe(t); got != "ok" {
		t.Errorf("connection after its binding expired: %s, want ok", got)
	}

	// A policy change that still allows the bound address keeps it.
	s.zone.SetTTL(300)
	long := startHoldClient(t, s.client, s.tb.cgroup, dnsAsk{Server: s.dns.addr4.String(), Net: "udp4", Name: "long.hold.test", ConnectPort0: echo})
	p2 := s.policy(mustName(t, "*.hold.test"), mustName(t, "unrelated.test"))
	s.tb.apply(t, p2)
	if got := long.probe(t); got != "ok" {
		t.Errorf("connection after a policy change that still allows it: %s, want ok", got)
	}
	// A policy without the name entry cuts it.
	s.tb.apply(t, s.policy(mustName(t, "unrelated.test")))
	if got := long.probe(t); got == "ok" {
		t.Errorf("connection still open after its name entry was removed")
	}
}

// TestDNSRefusedWithoutHooks: a kernel without the DNS hooks refuses name
// entries before apply, naming why.
func TestDNSRefusedWithoutHooks(t *testing.T) {
	requireKernel(t)
	t.Setenv("EXEWALL_TEST_DISABLE", "dns")
	tb := newTestBackend(t, scratchCgroup(t))
	p := &engine.Policy{Rules: []engine.Rule{{Name: "n", Selector: engine.Selector{Exe: "/bin/true"}, Action: engine.ActionDeny,
		Allow: []engine.Dest{mustName(t, "example.test")}}}}
	if err := tb.Refuse(p); !errors.Is(err, engine.ErrNotSupported) {
		t.Fatalf("Refuse = %v, want not supported", err)
	}
	p.Rules[0].Allow = []engine.Dest{{Prefix: netip.MustParsePrefix("192.0.2.0/24")}}
	if err := tb.Refuse(p); err != nil {
		t.Fatalf("Refuse without names = %v", err)
	}
}

// TestDNSSyncReattaches: a DNS hook detached behind exewall's back (the
// program then sees the forwarder's address and drops the reply) is
// re-attached by sync, and lookups work again.
func TestDNSSyncReattaches(t *testing.T) {
	s := newDNSSetup(t)
	s.set("sync.test", s.a4(80))
	p := s.policy(mustName(t, "sync.test"))
	s.tb.apply(t, p)
	l := s.tb.dnsLinks["dns_getpeername4"]
	if err := l.(interface{ Detach() error }).Detach(); err != nil {
		t.Fatal(err)
	}
	got := runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{s.ask("sync.test")})
	if got[0].Peer == s.dns.addr4.String() {
		t.Fatal("detaching did not take the program off the hook; the test proves nothing")
	}
	drifts, err := s.tb.Sync(context.Background(), p)
	if err != nil || len(drifts) == 0 {
		t.Fatalf("sync: drifts %v, err %v", drifts, err)
	}
	got = runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{s.ask("sync.test")})
	wantConnect(t, "after sync", got[0], "ok")
	if got[0].Peer != s.dns.addr4.String() {
		t.Errorf("getpeername after sync = %q, want %s", got[0].Peer, s.dns.addr4)
	}
}

// TestDNSDaemonNotSteered: the forwarder's own process (SetForwarder's
// pid) is never steered to itself: its query to a trusted resolver is an
// ordinary connection, here judged by its deny rule.
func TestDNSDaemonNotSteered(t *testing.T) {
	s := newDNSSetup(t)
	s.set("self.test", s.a4(90))
	s.tb.apply(t, s.policy(mustName(t, "self.test")))
	cgfd, err := os.Open(s.tb.cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer cgfd.Close()
	ask := s.ask("self.test")
	ask.Sleep = 2 * time.Second // until its pid is the forwarder's
	in, _ := json.Marshal([]dnsAsk{ask})
	cmd := exec.Command(s.client)
	cmd.Env = append(os.Environ(), dnsClientEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	cmd.Stdin = bytes.NewReader(in)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	udp4, udp6, tcp4, tcp6 := s.fwd.p.Addrs()
	if err := s.tb.SetForwarder(udp4, tcp4, udp6, tcp6, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	var got []dnsGot
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || len(got) != 1 {
		t.Fatalf("client output %q: %v", out.String(), err)
	}
	if got[0].Err != "EPERM" {
		t.Errorf("the forwarder's own query: %+v, want EPERM (judged by its rule, not steered)", got[0])
	}
}

// TestDNSDenyNameAfterAllowedConnect: under an allow rule, a connect to an
// address is allowed; once a lookup binds that address to a denied name,
// the next connect from the same thread is denied (an allow the datapath
// remembered per thread must not outlive a binding).
func TestDNSDenyNameAfterAllowedConnect(t *testing.T) {
	s := newDNSSetup(t)
	s.set("bad.example.test", s.a4(30))
	p := s.policy()
	p.Rules[0].Action = engine.ActionAllow
	p.Rules[0].Deny = []engine.Dest{mustName(t, "bad.example.test")}
	s.tb.apply(t, p)
	before := dnsAsk{Direct: s.a4(30), ConnectPort: 443}
	got := runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{before, before, s.ask("bad.example.test"), before})
	wantConnect(t, "before the lookup", got[0], "ok")
	wantConnect(t, "again before the lookup", got[1], "ok")
	wantConnect(t, "bad.example.test", got[2], "EPERM")
	wantConnect(t, "after the lookup", got[3], "EPERM")
}

// TestDNSEncryptedDNSDenied: a rule with a name entry denies DNS over TLS
// (port 853 anywhere) and the well-known DoH resolvers on 443 unless it
// allows them, as the reference evaluator does (engine.WithEncryptedDNSDenied).
// The connects are UDP: connect() sends nothing.
func TestDNSEncryptedDNSDenied(t *testing.T) {
	s := newDNSSetup(t)
	p := s.policy(mustName(t, "api.example.test"))
	p.Rules[0].Action = engine.ActionAllow
	s.tb.apply(t, p)
	got := runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{
		{Direct: s.a4(40), ConnectPort: 853},
		{Direct: "1.1.1.1", ConnectPort: 443},
		{Direct: s.a4(40), ConnectPort: 443},
	})
	wantConnect(t, "DoT to any address", got[0], "EPERM")
	wantConnect(t, "a well-known DoH resolver", got[1], "EPERM")
	wantConnect(t, "another address on 443", got[2], "ok")

	p.Rules[0].Allow = append(p.Rules[0].Allow, engine.Dest{Prefix: netip.MustParsePrefix("0.0.0.0/0"), PortLo: 853, PortHi: 853})
	s.tb.apply(t, p)
	got = runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{{Direct: s.a4(40), ConnectPort: 853}})
	wantConnect(t, "DoT allowed explicitly", got[0], "ok")
}
