//go:build linux

package linux

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/exewall/exewall/test/kerneltest"
)

type testDNS struct {
	zone  *kerneltest.Zone
	net   *kerneltest.Net
	addr4 netip.AddrPort // UDP and TCP on the same address, port 53
	addr6 netip.AddrPort // and an IPv6 one
}

// dnsNets is the test network namespace of each test that started a DNS
// server: its servers share it, each on addresses of its own.
var dnsNets struct {
	sync.Mutex
	m map[testing.TB]*dnsNet
}

type dnsNet struct {
	net  *kerneltest.Net
	next int
}

// dnsTestNet is the test's network namespace (kerneltest.NewNet), made on
// first use and removed when the test ends.
func dnsTestNet(t testing.TB) *dnsNet {
	t.Helper()
	dnsNets.Lock()
	defer dnsNets.Unlock()
	if n := dnsNets.m[t]; n != nil {
		return n
	}
	if dnsNets.m == nil {
		dnsNets.m = map[testing.TB]*dnsNet{}
	}
	n := &dnsNet{net: kerneltest.NewNet(t), next: 53}
	dnsNets.m[t] = n
	t.Cleanup(func() { dnsNets.Lock(); delete(dnsNets.m, t); dnsNets.Unlock() })
	return n
}

// startTestDNS serves zone over UDP and TCP on port 53 of a fresh IPv4 and
// IPv6 host of the test's network namespace until the test ends.
func startTestDNS(t *testing.T, zone *kerneltest.Zone) *testDNS {
	t.Helper()
	n := dnsTestNet(t)
	dnsNets.Lock()
	i := n.next
	n.next++
	dnsNets.Unlock()
	d := &testDNS{zone: zone, net: n.net, addr4: netip.AddrPortFrom(n.net.Addr4(i), 53), addr6: netip.AddrPortFrom(n.net.Addr6(i), 53)}
	n.net.ServeDNS(t, d.addr4, zone.Answer)
	n.net.ServeDNS(t, d.addr6, zone.Answer)
	return d
}

// netnsWeb serves TCP on a port of every host of the test's namespace
// (echoes what it reads) and returns the port.
func netnsWeb(t *testing.T, s *dnsSetup) uint16 {
	t.Helper()
	return s.dns.net.Listen(t, netip.MustParseAddrPort("[::]:0"), func(c net.Conn) { io.Copy(c, c) })
}

// TestDNSNetnsConnects: with the test's DNS server in its network
// namespace and the answers hosts of that namespace, real TCP connections
// (handshake done) follow the name entries: an exact name, a wildcard
// below it at any depth but not its apex, a CNAME chain into the wildcard,
// AAAA over IPv6, a lookup over TCP DNS and one to the server's IPv6
// address; a name the rule does not have stays denied.
func TestDNSNetnsConnects(t *testing.T) {
	s := newDNSSetup(t)
	port := netnsWeb(t, s)
	n := s.dns.net
	s.set("api.ns.test", n.Addr4(10).String())
	s.set("a.b.wild.ns.test", n.Addr4(11).String())
	s.set("wild.ns.test", n.Addr4(12).String())
	s.set("target.wild.ns.test", n.Addr4(13).String())
	s.zone.CNAME("alias.ns.test", "target.wild.ns.test")
	s.set("six.ns.test", n.Addr6(14).String())
	s.set("tcp.ns.test", n.Addr4(15).String())
	s.set("other.ns.test", n.Addr4(16).String())
	s.tb.apply(t, s.policy(mustName(t, "api.ns.test"), mustName(t, "*.wild.ns.test"), mustName(t, "alias.ns.test"),
		mustName(t, "six.ns.test"), mustName(t, "tcp.ns.test")))

	ask := func(name string) dnsAsk {
		return dnsAsk{Server: s.dns.addr4.String(), Net: "udp4", Name: name, ConnectPort: port, ConnectTCP: true}
	}
	six := ask("six.ns.test")
	six.AAAA = true
	overTCP := ask("tcp.ns.test")
	overTCP.Net = "tcp"
	via6 := ask("api.ns.test")
	via6.Server, via6.Net = s.dns.addr6.String(), "udp6"
	asks := []dnsAsk{ask("api.ns.test"), ask("a.b.wild.ns.test"), ask("wild.ns.test"), ask("alias.ns.test"), six, overTCP,
		ask("other.ns.test"), via6}
	got := runDNSClient(t, s.client, s.tb.cgroup, asks)
	want := []string{"ok", "ok", "EPERM", "ok", "ok", "ok", "EPERM", "ok"}
	for i, g := range got {
		if g.Err != "" || len(g.Connect) != 1 || g.Connect[0] != want[i] {
			t.Errorf("%s (%s): %+v, want connect %s", asks[i].Name, asks[i].Net, g, want[i])
		}
	}
	if got[3].Addrs == nil || got[3].Addrs[0] != n.Addr4(13).String() {
		t.Errorf("CNAME chain answered %v", got[3].Addrs)
	}
	if s.zone.Queries() != int64(len(asks)) {
		t.Errorf("the namespace's server saw %d queries, want %d", s.zone.Queries(), len(asks))
	}
}

// TestDNSSplitServers: two trusted servers in the test's namespace give
// different answers for one name (split DNS, a VPN's resolver); each query
// reaches the server the program asked and is answered by it, and the
// program connects to what its own server said. The other server's answer,
// never asked for, allows nothing.
func TestDNSSplitServers(t *testing.T) {
	s := newDNSSetup(t)
	port := netnsWeb(t, s)
	n := s.dns.net
	vpnZone := kerneltest.NewZone(300)
	vpn := startTestDNS(t, vpnZone)
	s.set("intranet.split.test", n.Addr4(20).String())
	vpnZone.Set("intranet.split.test", n.Addr4(21))
	vpnZone.Set("only.split.test", n.Addr4(22))
	p := s.policy(mustName(t, "*.split.test"))
	p.Resolvers = append(p.Resolvers, vpn.addr4)
	s.tb.apply(t, p)

	got := runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{
		{Server: vpn.addr4.String(), Net: "udp4", Name: "intranet.split.test", ConnectPort: port, ConnectTCP: true},
		{Direct: n.Addr4(20).String(), ConnectPort: port, ConnectTCP: true},
		{Server: vpn.addr4.String(), Net: "tcp", Name: "only.split.test", ConnectPort: port, ConnectTCP: true},
	})
	if len(got[0].Addrs) != 1 || got[0].Addrs[0] != n.Addr4(21).String() || got[0].Peer != vpn.addr4.String() {
		t.Errorf("asked the VPN server: %+v, want its answer %s from %s", got[0], n.Addr4(21), vpn.addr4)
	}
	wantConnect(t, "the VPN server's answer", got[0], "ok")
	wantConnect(t, "the other server's answer, never asked", got[1], "EPERM")
	wantConnect(t, "a name only the VPN server has, over TCP", got[2], "ok")
	if q := s.zone.Queries(); q != 0 {
		t.Errorf("the server not asked saw %d queries", q)
	}
	if q := vpnZone.Queries(); q != 2 {
		t.Errorf("the VPN server saw %d queries, want 2", q)
	}

	got = runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{
		{Server: s.dns.addr4.String(), Net: "udp4", Name: "intranet.split.test", ConnectPort: port, ConnectTCP: true}})
	if len(got[0].Addrs) != 1 || got[0].Addrs[0] != n.Addr4(20).String() {
		t.Errorf("asked the first server: %+v, want %s", got[0], n.Addr4(20))
	}
	wantConnect(t, "the first server's answer", got[0], "ok")
	if q := vpnZone.Queries(); q != 2 {
		t.Errorf("the VPN server saw %d queries, want still 2", q)
	}
}
