package engine_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

// TestLearningSkipsUDPNeverSent: glibc's getaddrinfo connect()s a UDP socket
// to every candidate address to sort them and sends nothing. A session must
// not learn those as UDP destinations (it would allow UDP to port 80), but
// must learn a DNS query sent over a connected socket and a datagram sent.
func TestLearningSkipsUDPNeverSent(t *testing.T) {
	f := newFixture(t, learnPolicy)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.m.Run(ctx)
	if _, err := f.m.StartLearning(ctx, time.Hour, time.Minute); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	web := netip.MustParseAddr("198.51.100.10")
	dns := netip.MustParseAddr("192.0.2.53")
	ev := func(call string, addr netip.Addr, port uint16) engine.Violation {
		return engine.Violation{Time: now, Exe: "/usr/bin/curl", Comm: "curl", Verdict: engine.VerdictAudit,
			Proto: "udp", Daddr: addr, Dport: port, Call: call}
	}
	f.b.Emit(ev(engine.CallConnect, web, 80)) // the sort probe: nothing sent
	f.b.Emit(ev(engine.CallConnect, dns, 53)) // glibc's resolver: connect, then send
	f.b.Emit(ev(engine.CallSend, web, 443))   // a datagram with an address
	waitFor(t, "3 attempts", func() bool { r, _ := f.m.LearnStatus(); return r.Events == 3 })
	r, err := f.m.StopLearning(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.NotSent != 1 {
		t.Errorf("not_sent = %d, want 1", r.NotSent)
	}
	if len(r.Observed) != 1 {
		t.Fatalf("observed: %+v", r.Observed)
	}
	for _, d := range r.Observed[0].Dests {
		if d.Proto == "udp" && d.Port == 80 {
			t.Errorf("learned UDP to port 80 that was never sent: %+v", d)
		}
	}
	if n := len(r.Observed[0].Dests); n != 2 {
		t.Errorf("learned %d destinations, want 2 (dns 53, udp 443): %+v", n, r.Observed[0].Dests)
	}
}
