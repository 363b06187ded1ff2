//go:build linux

package linux

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

// dnsSetup is a backend on a scratch cgroup, a test DNS server trusted by
// the policy, the test forwarder, and a client copy ruled by names.
type dnsSetup struct {
	tb     *testBackend
	dns    *testDNS
	fwd    *testForwarder
	client string
	zone   *testZone
}

func newDNSSetup(t *testing.T) *dnsSetup {
	t.Helper()
	requireKernel(t)
	cg := scratchCgroup(t)
	tb := newTestBackend(t, cg)
	zone := &testZone{a: map[string][]netip.Addr{}, cname: map[string]string{}, ttl: 300}
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
	return &engine.Policy{Resolvers: []netip.AddrPort{s.dns.addr4},
		Rules: []engine.Rule{{Name: "names", Selector: engine.Selector{Exe: s.client}, Action: engine.ActionDeny, Allow: allow}}}
}

func (s *dnsSetup) set(name string, addrs ...string) {
	s.zone.mu.Lock()
	defer s.zone.mu.Unlock()
	for _, a := range addrs {
		s.zone.a[name] = append(s.zone.a[name], netip.MustParseAddr(a))
	}
}

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
	s.set("api.example.test", "192.0.2.10")
	s.set("other.example.test", "192.0.2.11")
	s.tb.apply(t, s.policy(mustName(t, "api.example.test")))
	got := runDNSClient(t, s.client, s.tb.cgroup, []dnsAsk{s.ask("api.example.test"), s.ask("other.example.test")})
	wantConnect(t, "api.example.test", got[0], "ok")
	wantConnect(t, "other.example.test", got[1], "EPERM")
	if got[0].Peer != s.dns.addr4.String() {
		t.Errorf("getpeername of the DNS socket = %s, want %s", got[0].Peer, s.dns.addr4)
	}
	if n := s.dns.zone.queries.Load(); n != 2 {
		t.Errorf("server saw %d queries, want 2", n)
	}
	fmt.Println(got)
	_ = time.Second
}
