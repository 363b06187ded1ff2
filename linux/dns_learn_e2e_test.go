//go:build linux

package linux

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/dnsproxy"
	"github.com/exewall/exewall/test/kerneltest"
)

// TestDNSLearnNames: a learning session run by the engine's Manager over
// this backend and its forwarder (wired as the daemon wires them:
// Config.Observe -> Asker -> Manager.ObserveLookups) learns a name entry
// where the program connected to an address it had looked up, and an
// address where it had not.
func TestDNSLearnNames(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	tb := newTestBackend(t, cg)
	zone := kerneltest.NewZone(300)
	dns := startTestDNS(t, zone)
	client := clientCopy(t, t.TempDir(), "dnsclient")
	rn := newRemoteNet(t)
	zone.Set("learned.example.test", rn.far4)

	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	pol := fmt.Sprintf("default: allow\nresolvers: [%s]\n", dns.addr4.Addr())
	if err := os.WriteFile(path, []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	b := tb.Backend
	m := engine.NewManager(engine.ManagerConfig{Backend: b, PolicyFile: path, RollbackFile: filepath.Join(dir, "rollback.yaml")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	go m.Run(ctx)

	p, err := dnsproxy.New(dnsproxy.Config{Listen4: netip.MustParseAddrPort("127.0.0.1:0"), Origin: b, Learner: b,
		Observe: func(peer netip.AddrPort, tcp bool, bs []dnsproxy.Binding) {
			if pid, ok := b.Asker(peer, tcp); ok {
				if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil {
					m.ObserveLookups(exe, dnsproxy.LearnLookups(bs))
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	u4, _, t4, _ := p.Addrs()
	if err := b.SetForwarder(u4, t4, netip.AddrPort{}, netip.AddrPort{}, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Serve(pctx) }()
	t.Cleanup(func() { pcancel(); <-done })

	if _, err := m.StartLearning(ctx, time.Hour, time.Minute); err != nil {
		t.Fatal(err)
	}
	got := runDNSClient(t, client, tb.cgroup, []dnsAsk{
		{Server: dns.addr4.String(), Net: "udp4", Name: "learned.example.test", ConnectPort: rn.port, ConnectTCP: true},
		{Direct: rn.far6.String(), ConnectPort: rn.port, ConnectTCP: true, Sleep: 500 * time.Millisecond},
	})
	wantConnect(t, "lookup while learning", got[0], "ok")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if r, _ := m.LearnStatus(); r.Events >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the session did not see both connects")
		}
	}
	r, err := m.StopLearning(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Policy, fmt.Sprintf("- learned.example.test port %d tcp", rn.port)) || !strings.Contains(r.Policy, rn.far6.String()) {
		t.Errorf("learned policy lacks the name entry or the plain address:\n%s\nobserved %+v", r.Policy, r.Observed)
	}
	if strings.Contains(r.Policy, rn.far4.String()+"/32") {
		t.Errorf("learned policy names the looked-up address, not the name:\n%s", r.Policy)
	}
}
