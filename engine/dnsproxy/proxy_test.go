package dnsproxy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func chainServer(t testing.TB) *fakeServer {
	return startServer(t, func(q dnsmessage.Message) dnsmessage.Message {
		switch q.Questions[0].Type {
		case dnsmessage.TypeA:
			return dnsmessage.Message{Answers: []dnsmessage.Resource{
				cname("API.Example.com.", 300, "edge.cdn.test."),
				a("edge.cdn.test.", 60, "192.0.2.10"),
				a("other.test.", 60, "192.0.2.99"), // not on the chain: teaches nothing
			}}
		case dnsmessage.TypeAAAA:
			return dnsmessage.Message{Answers: []dnsmessage.Resource{a(q.Questions[0].Name.String(), 5, "2001:db8::10")}}
		}
		return dnsmessage.Message{Header: dnsmessage.Header{RCode: dnsmessage.RCodeNameError}}
	})
}

// TestForwardUDP: the answer reaches the program byte for byte as the
// server sent it, the chain's addresses are in force with the rule, the
// TTL is clamped, and names off the chain teach nothing.
func TestForwardUDP(t *testing.T) {
	srv := chainServer(t)
	l := newLearner()
	p := startProxy(t, Config{Origin: fakeOrigin{7, srv.addr, true}, Learner: l, TTLFloor: 30 * time.Second, TTLCeiling: 120 * time.Second})
	udp4, _, _, _ := p.Addrs()
	before := time.Now()
	got := askUDP(t, udp4, query(t, 0x1234, "api.example.com.", dnsmessage.TypeA))
	if !bytes.Equal(got, srv.last()) {
		t.Fatal("answer changed on the way")
	}
	b, ok := l.get(7, "192.0.2.10")
	if !ok {
		t.Fatal("192.0.2.10 not in force for rule 7")
	}
	if !slices.Equal(b.Names, []string{"api.example.com", "edge.cdn.test"}) {
		t.Errorf("names %q", b.Names)
	}
	if ttl := b.Expires.Sub(before); ttl < 60*time.Second || ttl > 61*time.Second+time.Since(before) {
		t.Errorf("expiry in %s, want 60s (the chain's smallest TTL)", ttl)
	}
	if _, ok := l.get(7, "192.0.2.99"); ok {
		t.Error("an address off the chain was learned")
	}
	// AAAA, TTL 5 clamped up to the floor.
	askUDP(t, udp4, query(t, 2, "v6.example.com.", dnsmessage.TypeAAAA))
	b, ok = l.get(7, "2001:db8::10")
	if !ok || b.Expires.Sub(before) < 30*time.Second {
		t.Errorf("AAAA binding %v %v, want in force for the 30s floor", b, ok)
	}
	st := p.Stats()
	if st.Queries != 2 || st.Answers != 2 || st.Bindings != 2 || st.InForce != 2 || st.Failures != 0 {
		t.Errorf("stats %+v", st)
	}
	if bs := p.Bindings(); len(bs) != 2 || bs[0].Addr != netip.MustParseAddr("192.0.2.10") {
		t.Errorf("bindings %v", bs)
	}
}

// TestForwardTCP: length-prefixed queries, several on one connection.
func TestForwardTCP(t *testing.T) {
	srv := chainServer(t)
	l := newLearner()
	p := startProxy(t, Config{Origin: fakeOrigin{3, srv.addr, true}, Learner: l})
	_, _, tcp4, _ := p.Addrs()
	out := askTCP(t, tcp4, query(t, 1, "api.example.com.", dnsmessage.TypeA), query(t, 2, "x.example.com.", dnsmessage.TypeAAAA))
	if len(out) != 2 || rcode(t, out[1]) != dnsmessage.RCodeSuccess {
		t.Fatalf("answers %d", len(out))
	}
	if _, ok := l.get(3, "192.0.2.10"); !ok {
		t.Error("A over TCP not learned")
	}
	if _, ok := l.get(3, "2001:db8::10"); !ok {
		t.Error("AAAA over TCP not learned")
	}
}

// gateLearner blocks Learn until the test opens the gate.
type gateLearner struct {
	*fakeLearner
	entered chan struct{}
	gate    chan struct{}
}

func (g gateLearner) Learn(bs []Binding) error {
	g.entered <- struct{}{}
	<-g.gate
	return g.fakeLearner.Learn(bs)
}

// TestAnswerWaitsForLearn: no answer reaches the program while its
// bindings are being put in force.
func TestAnswerWaitsForLearn(t *testing.T) {
	srv := chainServer(t)
	g := gateLearner{newLearner(), make(chan struct{}, 1), make(chan struct{})}
	p := startProxy(t, Config{Origin: fakeOrigin{1, srv.addr, true}, Learner: g})
	udp4, _, _, _ := p.Addrs()
	c, err := net.Dial("udp", udp4.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(query(t, 9, "api.example.com.", dnsmessage.TypeA))
	<-g.entered
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, maxMsg)
	if _, err := c.Read(buf); err == nil {
		t.Fatal("answer released before Learn returned")
	}
	close(g.gate)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.get(1, "192.0.2.10"); !ok {
		t.Error("not in force")
	}
}

// TestLearnFailsServfail: a Learn error withholds the answer.
func TestLearnFailsServfail(t *testing.T) {
	srv := chainServer(t)
	l := newLearner()
	l.fail = errLearn
	p := startProxy(t, Config{Origin: fakeOrigin{1, srv.addr, true}, Learner: l})
	udp4, _, tcp4, _ := p.Addrs()
	q := query(t, 5, "api.example.com.", dnsmessage.TypeA)
	if got := askUDP(t, udp4, q); rcode(t, got) != dnsmessage.RCodeServerFailure {
		t.Errorf("udp rcode %v", rcode(t, got))
	}
	if got := askTCP(t, tcp4, q)[0]; rcode(t, got) != dnsmessage.RCodeServerFailure {
		t.Errorf("tcp rcode %v", rcode(t, got))
	}
	if st := p.Stats(); st.Failures != 2 || st.Answers != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestUnknownOrigin and a dead server answer SERVFAIL: fail closed.
func TestUnknownOriginAndDeadServer(t *testing.T) {
	l := newLearner()
	p := startProxy(t, Config{Origin: fakeOrigin{ok: false}, Learner: l})
	udp4, _, _, _ := p.Addrs()
	if got := askUDP(t, udp4, query(t, 5, "a.test.", dnsmessage.TypeA)); rcode(t, got) != dnsmessage.RCodeServerFailure {
		t.Errorf("unknown origin: rcode %v", rcode(t, got))
	}
	dead, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	server := dead.LocalAddr().(*net.UDPAddr).AddrPort()
	dead.Close()
	p2 := startProxy(t, Config{Origin: fakeOrigin{1, server, true}, Learner: l, Timeout: time.Second})
	udp4, _, _, _ = p2.Addrs()
	if got := askUDP(t, udp4, query(t, 6, "a.test.", dnsmessage.TypeA)); rcode(t, got) != dnsmessage.RCodeServerFailure {
		t.Errorf("dead server: rcode %v", rcode(t, got))
	}
}

// TestTruncatedPassesThrough: a truncated UDP answer reaches the program
// unchanged; the addresses it holds are learned all the same.
func TestTruncatedPassesThrough(t *testing.T) {
	srv := startServer(t, func(q dnsmessage.Message) dnsmessage.Message {
		return dnsmessage.Message{Header: dnsmessage.Header{Truncated: true},
			Answers: []dnsmessage.Resource{a("big.test.", 60, "198.51.100.1")}}
	})
	l := newLearner()
	p := startProxy(t, Config{Origin: fakeOrigin{1, srv.addr, true}, Learner: l})
	udp4, _, _, _ := p.Addrs()
	got := askUDP(t, udp4, query(t, 5, "big.test.", dnsmessage.TypeA))
	if !bytes.Equal(got, srv.last()) {
		t.Error("truncated answer changed")
	}
	if _, ok := l.get(1, "198.51.100.1"); !ok {
		t.Error("address of a truncated answer released without being in force")
	}
}

// TestUntrustedTeachesNothing: an answer from a server Trusted refuses is
// released and teaches nothing.
func TestUntrustedTeachesNothing(t *testing.T) {
	srv := chainServer(t)
	l := newLearner()
	p := startProxy(t, Config{Origin: fakeOrigin{1, srv.addr, true}, Learner: l,
		Trusted: func(netip.AddrPort) bool { return false }})
	udp4, _, _, _ := p.Addrs()
	if got := askUDP(t, udp4, query(t, 5, "api.example.com.", dnsmessage.TypeA)); rcode(t, got) != dnsmessage.RCodeSuccess {
		t.Errorf("rcode %v", rcode(t, got))
	}
	if _, ok := l.get(1, "192.0.2.10"); ok || p.Stats().InForce != 0 {
		t.Error("an untrusted server taught a binding")
	}
}

// TestPerRuleCapEvicts: the least recently answered address of a rule goes
// first, other rules keep theirs, and evictions are counted and forgotten.
func TestPerRuleCapEvicts(t *testing.T) {
	n := 0
	srv := startServer(t, func(q dnsmessage.Message) dnsmessage.Message {
		n++
		return dnsmessage.Message{Answers: []dnsmessage.Resource{a(q.Questions[0].Name.String(), 60, netip.AddrFrom4([4]byte{192, 0, 2, byte(n)}).String())}}
	})
	l := newLearner()
	origin := &switchOrigin{server: srv.addr, rule: 1}
	p := startProxy(t, Config{Origin: origin, Learner: l, PerRuleCap: 2})
	udp4, _, _, _ := p.Addrs()
	for i, name := range []string{"a.test.", "b.test.", "c.test."} { // 192.0.2.1-3 for rule 1
		askUDP(t, udp4, query(t, uint16(i), name, dnsmessage.TypeA))
	}
	origin.set(2)
	askUDP(t, udp4, query(t, 9, "d.test.", dnsmessage.TypeA)) // 192.0.2.4 for rule 2
	if _, ok := l.get(1, "192.0.2.1"); ok {
		t.Error("oldest binding of rule 1 not evicted")
	}
	for _, k := range []struct {
		rule uint32
		a    string
	}{{1, "192.0.2.2"}, {1, "192.0.2.3"}, {2, "192.0.2.4"}} {
		if _, ok := l.get(k.rule, k.a); !ok {
			t.Errorf("rule %d lost %s", k.rule, k.a)
		}
	}
	if st := p.Stats(); st.Evictions != 1 || st.InForce != 3 {
		t.Errorf("stats %+v", st)
	}
	if f := l.forgotten(); len(f) != 1 || f[0].Addr != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("forgotten %v", f)
	}
}

// TestExpiryForgets: when the (clamped) TTL runs out the binding is
// forgotten; a refreshed binding lives on.
func TestExpiryForgets(t *testing.T) {
	srv := chainServer(t)
	l := newLearner()
	p := startProxy(t, Config{Origin: fakeOrigin{1, srv.addr, true}, Learner: l, TTLFloor: 50 * time.Millisecond, TTLCeiling: 50 * time.Millisecond})
	udp4, _, _, _ := p.Addrs()
	askUDP(t, udp4, query(t, 5, "api.example.com.", dnsmessage.TypeA))
	for i := 0; ; i++ {
		if _, ok := l.get(1, "192.0.2.10"); !ok {
			break
		}
		if i > 1000 {
			t.Fatal("binding never expired")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p.Stats().InForce != 0 {
		t.Error("table still holds the expired binding")
	}
}

func TestFlush(t *testing.T) {
	srv := chainServer(t)
	l := newLearner()
	p := startProxy(t, Config{Origin: fakeOrigin{4, srv.addr, true}, Learner: l})
	udp4, _, _, _ := p.Addrs()
	askUDP(t, udp4, query(t, 5, "api.example.com.", dnsmessage.TypeA))
	if err := p.Flush(func(rule uint32) bool { return rule != 4 }); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.get(4, "192.0.2.10"); ok || p.Stats().InForce != 0 {
		t.Error("flushed rule's binding still in force")
	}
}

func TestNewRefuses(t *testing.T) {
	l := newLearner()
	for _, cfg := range []Config{
		{Listen4: netip.MustParseAddrPort("127.0.0.1:0"), Learner: l},
		{Listen4: netip.MustParseAddrPort("0.0.0.0:0"), Origin: fakeOrigin{}, Learner: l},
		{Origin: fakeOrigin{}, Learner: l},
		{Listen4: netip.MustParseAddrPort("127.0.0.1:0"), Origin: fakeOrigin{}, Learner: l, TTLFloor: time.Hour, TTLCeiling: time.Minute},
	} {
		if p, err := New(cfg); err == nil {
			p.close()
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// TestForwardEDNS: a query with an OPT record (as glibc and every stub
// send) is answered; the answer is matched to it by ID and question.
func TestForwardEDNS(t *testing.T) {
	srv := chainServer(t)
	l := newLearner()
	p := startProxy(t, Config{Origin: fakeOrigin{2, srv.addr, true}, Learner: l})
	udp4, _, _, _ := p.Addrs()
	var opt dnsmessage.Resource
	if err := opt.Header.SetEDNS0(1232, dnsmessage.RCodeSuccess, false); err != nil {
		t.Fatal(err)
	}
	opt.Body = &dnsmessage.OPTResource{}
	m := dnsmessage.Message{Header: dnsmessage.Header{ID: 0xbeef, RecursionDesired: true},
		Questions:   []dnsmessage.Question{{Name: dnsmessage.MustNewName("Api.Example.Com."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
		Additionals: []dnsmessage.Resource{opt}}
	q, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ { // the pooled upstream socket is reused
		if got := askUDP(t, udp4, q); rcode(t, got) != dnsmessage.RCodeSuccess {
			t.Fatalf("rcode %v", rcode(t, got))
		}
	}
	if _, ok := l.get(2, "192.0.2.10"); !ok {
		t.Error("not learned")
	}
}

func TestNameBindings(t *testing.T) {
	srv := chainServer(t)
	p := startProxy(t, Config{Origin: fakeOrigin{5, srv.addr, true}, Learner: newLearner(), TTLFloor: 20 * time.Second, TTLCeiling: time.Minute})
	udp4, _, _, _ := p.Addrs()
	askUDP(t, udp4, query(t, 1, "api.example.com.", dnsmessage.TypeA))
	got := p.NameBindings(func(r uint32) (string, bool) { return "gh", r == 5 })
	if len(got) != 1 || got[0].Rule != "gh" || got[0].Name != "api.example.com" || !slices.Equal(got[0].Via, []string{"edge.cdn.test"}) {
		t.Errorf("%+v", got)
	}
	if got := p.NameBindings(func(uint32) (string, bool) { return "", false }); len(got) != 0 {
		t.Errorf("a removed rule's bindings listed: %+v", got)
	}
	if st := p.NameStats(); st.TTLFloorSeconds != 20 || st.TTLCeilingSeconds != 60 || st.InForce != 1 || st.Queries != 1 {
		t.Errorf("%+v", st)
	}
}

// TestListen6: the IPv6 loopback listener answers over UDP and TCP.
func TestListen6(t *testing.T) {
	srv := chainServer(t)
	l := newLearner()
	p, err := New(Config{Listen6: netip.MustParseAddrPort("[::1]:0"), Origin: fakeOrigin{6, srv.addr, true}, Learner: l})
	if err != nil {
		t.Fatalf("::1: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	udp4, udp6, tcp4, tcp6 := p.Addrs()
	if udp4.IsValid() || tcp4.IsValid() || udp6.Port() != tcp6.Port() {
		t.Fatalf("addrs %v %v %v %v", udp4, udp6, tcp4, tcp6)
	}
	if got := askUDP(t, udp6, query(t, 1, "x.test.", dnsmessage.TypeAAAA)); rcode(t, got) != dnsmessage.RCodeSuccess {
		t.Error("udp6")
	}
	if got := askTCP(t, tcp6, query(t, 2, "api.example.com.", dnsmessage.TypeA))[0]; rcode(t, got) != dnsmessage.RCodeSuccess {
		t.Error("tcp6")
	}
	if _, ok := l.get(6, "192.0.2.10"); !ok {
		t.Error("not learned over IPv6")
	}
}

// peerOrigin maps the asker's port to a rule, as the kernel side would map
// a socket to its program's rule.
type peerOrigin struct{ server netip.AddrPort }

func (o peerOrigin) Origin(peer netip.AddrPort, _ bool) (uint32, netip.AddrPort, bool) {
	return uint32(peer.Port() % 4), o.server, true
}

// TestConcurrentConsistent: many programs asking at once, with evictions:
// what the Learner holds in force is exactly the table, within the cap.
func TestConcurrentConsistent(t *testing.T) {
	var mu sync.Mutex
	n := 0
	srv := startServer(t, func(q dnsmessage.Message) dnsmessage.Message {
		mu.Lock()
		n++
		i := n
		mu.Unlock()
		return dnsmessage.Message{Answers: []dnsmessage.Resource{
			a(q.Questions[0].Name.String(), 60, netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).String()),
			a(q.Questions[0].Name.String(), 60, netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}).String())}}
	})
	l := newLearner()
	p := startProxy(t, Config{Origin: peerOrigin{srv.addr}, Learner: l, PerRuleCap: 8})
	udp4, _, tcp4, _ := p.Addrs()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				q := query(t, uint16(g*100+i), fmt.Sprintf("h%d-%d.test.", g, i), dnsmessage.TypeA)
				if i%5 == 0 {
					askTCP(t, tcp4, q)
				} else {
					askUDP(t, udp4, q)
				}
			}
		}()
	}
	wg.Wait()
	table := p.Bindings()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(table) != len(l.inForce) {
		t.Fatalf("table holds %d bindings, the learner %d", len(table), len(l.inForce))
	}
	perRule := map[uint32]int{}
	for _, b := range table {
		if _, ok := l.inForce[mkKey(b.Rule, b.Addr)]; !ok {
			t.Errorf("%v in the table, not in force", b)
		}
		perRule[b.Rule]++
	}
	for r, c := range perRule {
		if c > 8 {
			t.Errorf("rule %d holds %d bindings, cap 8", r, c)
		}
	}
	if st := p.Stats(); st.Queries != 200 || st.Answers != 200 || st.Evictions == 0 || int(st.Bindings)-int(st.Evictions) != len(table) {
		t.Errorf("stats %+v, %d in the table", st, len(table))
	}
}

// TestLoopRefused: a query the Origin says was addressed to the forwarder
// itself is answered SERVFAIL, not forwarded to itself forever.
func TestLoopRefused(t *testing.T) {
	origin := &switchOrigin{rule: 1}
	p := startProxy(t, Config{Origin: origin, Learner: newLearner(), Timeout: time.Second})
	udp4, _, _, _ := p.Addrs()
	origin.mu.Lock()
	origin.server = udp4
	origin.mu.Unlock()
	if got := askUDP(t, udp4, query(t, 1, "a.test.", dnsmessage.TypeA)); rcode(t, got) != dnsmessage.RCodeServerFailure {
		t.Errorf("rcode %v", rcode(t, got))
	}
	if st := p.Stats(); st.Queries != 1 || st.Failures != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestStaleAnswerSkipped: a late or duplicated answer left on a reused
// upstream socket is not taken for the next query's answer.
func TestStaleAnswerSkipped(t *testing.T) {
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	go func() { // answers every query twice
		buf := make([]byte, maxMsg)
		for {
			n, peer, err := u.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			var m dnsmessage.Message
			if m.Unpack(buf[:n]) != nil {
				continue
			}
			m.Response = true
			m.Answers = []dnsmessage.Resource{a(m.Questions[0].Name.String(), 60, "192.0.2.1")}
			out, _ := m.Pack()
			u.WriteToUDPAddrPort(out, peer)
			u.WriteToUDPAddrPort(out, peer)
		}
	}()
	p := startProxy(t, Config{Origin: fakeOrigin{1, u.LocalAddr().(*net.UDPAddr).AddrPort(), true}, Learner: newLearner()})
	udp4, _, _, _ := p.Addrs()
	for i, name := range []string{"first.test.", "second.test.", "third.test."} {
		got, err := ParseAnswer(askUDP(t, udp4, query(t, uint16(100+i), name, dnsmessage.TypeA)))
		if err != nil || got.ID != uint16(100+i) || got.Question+"." != name {
			t.Errorf("query %d for %s: answer %+v %v", 100+i, name, got, err)
		}
	}
}

// TestObserve: the asker and the bindings in force are reported, for a
// learning session to record lookups by executable.
func TestObserve(t *testing.T) {
	srv := chainServer(t)
	l := newLearner()
	type seen struct {
		peer netip.AddrPort
		tcp  bool
		bs   []Binding
	}
	ch := make(chan seen, 2)
	p := startProxy(t, Config{Origin: fakeOrigin{1, srv.addr, true}, Learner: l,
		Observe: func(peer netip.AddrPort, tcp bool, bs []Binding) {
			if _, ok := l.get(1, bs[0].Addr.String()); !ok {
				t.Error("observed before in force")
			}
			ch <- seen{peer, tcp, bs}
		}})
	udp4, _, _, _ := p.Addrs()
	askUDP(t, udp4, query(t, 1, "api.example.com.", dnsmessage.TypeA))
	s := <-ch
	if s.tcp || !s.peer.Addr().IsLoopback() || len(s.bs) != 1 {
		t.Fatalf("%+v", s)
	}
	if got := LearnLookups(s.bs); len(got) != 1 || got[0].Name != "api.example.com" || got[0].Addr != netip.MustParseAddr("192.0.2.10") {
		t.Errorf("lookups %+v", got)
	}
}
