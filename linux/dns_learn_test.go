//go:build linux

package linux

import (
	"context"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/dnsproxy"
	"github.com/exewall/exewall/test/kerneltest"
)

// TestDNSLearnSteersEveryQuery: while a learning session runs
// (SetLearnDNS), a program under no name rule has its query to a trusted
// resolver steered through the forwarder, which reports the lookup with the
// asking program's executable (Asker) and binds nothing; the program gets
// its answer and connects (audit). Once the session ends, its queries go
// to the server directly again.
func TestDNSLearnSteersEveryQuery(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	tb := newTestBackend(t, cg)
	zone := kerneltest.NewZone(300)
	dns := startTestDNS(t, zone)
	client := clientCopy(t, t.TempDir(), "dnsclient")
	zone.Set("learn.example.test", netip.MustParseAddr("192.0.2.40"))

	var mu sync.Mutex
	seen := map[string][]engine.LearnLookup{} // by executable
	var b *Backend = tb.Backend
	p, err := dnsproxy.New(dnsproxy.Config{Listen4: netip.MustParseAddrPort("127.0.0.1:0"), Listen6: netip.MustParseAddrPort("[::1]:0"),
		Origin: b, Learner: b, TTLFloor: time.Second,
		Observe: func(peer netip.AddrPort, tcp bool, bs []dnsproxy.Binding) {
			exe := "?"
			if pid, ok := b.Asker(peer, tcp); ok {
				if e, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil {
					exe = e
				}
			}
			mu.Lock()
			seen[exe] = append(seen[exe], dnsproxy.LearnLookups(bs)...)
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	udp4, udp6, tcp4, tcp6 := p.Addrs()
	if err := b.SetForwarder(udp4, tcp4, udp6, tcp6, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	if err := b.SetLearnDNS(true); err != nil {
		t.Fatal(err)
	}
	// The learning policy, trusting the test server (a session trusts the
	// host's resolvers).
	learning := engine.LearningPolicyOutbound()
	learning.Resolvers = []netip.AddrPort{dns.addr4, dns.addr6}
	tb.apply(t, learning)
	asks := []dnsAsk{
		{Server: dns.addr4.String(), Net: "udp4", Name: "learn.example.test", ConnectPort: 443},
		{Server: dns.addr4.String(), Net: "tcp", Name: "learn.example.test", ConnectPort: 443, ConnectTCP: true},
	}
	got := runDNSClient(t, client, tb.cgroup, asks)
	wantConnect(t, "udp lookup while learning", got[0], "ok")
	wantConnect(t, "tcp lookup while learning", got[1], "ok")
	if got[0].Peer != dns.addr4.String() {
		t.Errorf("getpeername while learning = %q, want %s", got[0].Peer, dns.addr4)
	}
	mu.Lock()
	lk := seen[client]
	mu.Unlock()
	want := engine.LearnLookup{Name: "learn.example.test", Addr: netip.MustParseAddr("192.0.2.40")}
	if len(lk) != len(asks) || lk[0] != want || lk[1] != want {
		t.Fatalf("lookups reported for %s: %+v (all: %+v), want %d of %+v", client, lk, seen, len(asks), want)
	}
	if bs := b.Bindings(); len(bs) != 0 {
		t.Errorf("learning bound %+v, want nothing", bs)
	}

	if err := b.SetLearnDNS(false); err != nil {
		t.Fatal(err)
	}
	got = runDNSClient(t, client, tb.cgroup, asks[:1])
	wantConnect(t, "lookup after learning", got[0], "ok")
	mu.Lock()
	n := len(seen[client])
	mu.Unlock()
	if n != len(asks) {
		t.Errorf("a lookup after the session was reported (%d lookups, want %d)", n, len(asks))
	}
}
