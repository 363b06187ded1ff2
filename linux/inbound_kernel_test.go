//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/test/kerneltest"
)

// The inbound tests: servers (copies of the test binary, inServerEnv) run
// in the scratch cgroup; peers dial from a network namespace the test makes
// (on-link: the veth's far end; far: an address routed via it) or from
// loopback in the test's own namespace (outside the cgroup).

// sabotageInbound detaches the inbound hooks (EXEWALL_TEST_SABOTAGE=inbound).
func (tb *testBackend) sabotageInbound(what string) {
	if what != "inbound" {
		return
	}
	judgeAcceptedInbound = false
	for name, l := range tb.inboundLinks {
		l.Unpin()
		l.Close()
		delete(tb.inboundLinks, name)
	}
}

type inFixture struct {
	b   *testBackend
	cg  string
	ns  netns.NsHandle
	dir string
	// The veth pair's addresses (host: ours; peer: on-link) and the far
	// hosts routed via the peer, in ranges picked at random so that
	// concurrent runs do not collide.
	host4, host6, peer4, peer6, far4, far6 netip.Addr
}

var (
	lo4  = netip.MustParseAddr("127.0.0.1")
	lo6  = netip.IPv6Loopback()
	here = netns.NsHandle(-1) // dial from the test's namespace
)

func newInFixture(t *testing.T) *inFixture {
	t.Helper()
	requireKernel(t)
	cg := scratchCgroup(t)
	// Third octets 1-99: test/e2e's learn tests, which may run beside
	// these, draw theirs from 100-249 (NewHost refuses an overlap).
	r := rand.IntN(99) + 1
	h4 := netip.MustParsePrefix(fmt.Sprintf("198.18.%d.1/30", r))
	p4 := netip.MustParsePrefix(fmt.Sprintf("198.18.%d.2/30", r))
	h6 := netip.MustParsePrefix(fmt.Sprintf("2001:db8:ee:%x::1/64", r))
	p6 := netip.MustParsePrefix(fmt.Sprintf("2001:db8:ee:%x::2/64", r))
	f := &inFixture{cg: cg, dir: publicDir(t), host4: h4.Addr(), peer4: p4.Addr(), host6: h6.Addr(), peer6: p6.Addr(),
		far4: netip.MustParseAddr(fmt.Sprintf("198.19.%d.10", r)), far6: netip.MustParseAddr(fmt.Sprintf("2001:db8:ef:%x::10", r))}
	h := kerneltest.NewHost(t, kerneltest.HostConfig{Host4: h4, Peer4: p4, Host6: h6, Peer6: p6, Far: []netip.Addr{f.far4, f.far6}})
	f.ns = h.NS
	f.waitV6(t)
	f.b = newTestBackend(t, cg)
	// The first apply attaches the hooks: servers started after it have
	// their creator recorded.
	f.b.apply(t, &engine.Policy{Default: engine.ActionAllow})
	if !f.b.inboundOK || f.b.optional["inbound"] != nil {
		t.Fatalf("inbound hooks not in force: %v", f.b.optional["inbound"])
	}
	return f
}

// waitV6 waits until the host's IPv6 address answers from the namespace
// (duplicate address detection holds it back for a moment).
func (f *inFixture) waitV6(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp6", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello\n"))
			c.Close()
		}
	}()
	dst := netip.AddrPortFrom(f.host6, uint16(l.Addr().(*net.TCPAddr).Port))
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if c, err := dialIn(t, f.ns, netip.Addr{}, dst, time.Second); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("%s not reachable from the namespace", dst)
}

func (f *inFixture) server(t *testing.T, name string, socks []inSock, cred *syscall.Credential) (string, *inServer) {
	t.Helper()
	exe := clientCopy(t, f.dir, name)
	return exe, startInServer(t, exe, f.cg, socks, cred)
}

// tcpAccepted reports whether a connection from src (in ns) to dst is
// accepted; a refused one gets no answer (the wait runs out).
func tcpAccepted(t *testing.T, ns netns.NsHandle, src netip.Addr, dst netip.AddrPort) bool {
	t.Helper()
	c, err := dialIn(t, ns, src, dst, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// udpReceived sends datagrams from src to the server's socket i and reports
// whether the server read any.
func udpReceived(t *testing.T, s *inServer, i int, ns netns.NsHandle, src netip.Addr, dst netip.AddrPort) bool {
	t.Helper()
	before := s.counts(t)[i]
	for range 3 {
		sendIn(t, ns, src, dst)
		time.Sleep(50 * time.Millisecond)
	}
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if s.counts(t)[i] > before {
			return true
		}
	}
	return false
}

// wantInEvent waits for the inbound event of a refused peer: direction in,
// daddr the peer, dport the local port, pid, uid and comm of the creator.
func wantInEvent(t *testing.T, b *testBackend, s *inServer, comm string, uid uint32, peer netip.Addr, port uint16, proto string) {
	t.Helper()
	v := waitViolation(t, b.Backend, func(v engine.Violation) bool {
		return v.Direction == "in" && v.Daddr == peer.Unmap() && v.Dport == port && v.Proto == proto
	})
	if v.PID != s.pid() || v.Comm != comm || v.UID != uid || v.Verdict != engine.VerdictDeny {
		t.Errorf("event %+v: want pid %d comm %q uid %d verdict deny", v, s.pid(), comm, uid)
	}
}

func exeRule(name, exe string, a engine.Action, allow ...engine.Dest) engine.Rule {
	return engine.Rule{Name: name, Selector: engine.Selector{Exe: exe}, Action: a, Allow: allow}
}

// TestInboundDenyRefusesTCPAndUDP: a deny program accepts nothing: TCP
// handshakes and UDP datagrams from a peer in another namespace (IPv4, IPv6,
// IPv4-mapped on a dual-stack socket) and from loopback are refused before
// the program sees them, each with a direction-in event naming the creator.
func TestInboundDenyRefusesTCPAndUDP(t *testing.T) {
	f := newInFixture(t)
	socks := []inSock{{Proto: "tcp", Family: 4}, {Proto: "tcp", Family: 6}, {Proto: "tcp", Family: 46},
		{Proto: "udp", Family: 4}, {Proto: "udp", Family: 6}, {Proto: "udp", Family: 46}}
	exe, s := f.server(t, "indeny", socks, nil)
	f.b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{exeRule("indeny", exe, engine.ActionDeny)}})
	p := s.ports
	cases := []struct {
		i    int
		ns   netns.NsHandle
		peer netip.Addr
		dst  netip.Addr
	}{
		{0, f.ns, f.peer4, f.host4}, {1, f.ns, f.peer6, f.host6}, {2, f.ns, f.peer4, f.host4}, {0, here, lo4, lo4},
		{3, f.ns, f.peer4, f.host4}, {4, f.ns, f.peer6, f.host6}, {5, f.ns, f.peer4, f.host4}, {4, here, lo6, lo6},
	}
	for _, c := range cases {
		dst := netip.AddrPortFrom(c.dst, p[c.i])
		proto := socks[c.i].Proto
		if proto == "tcp" {
			if tcpAccepted(t, c.ns, netip.Addr{}, dst) {
				t.Errorf("tcp from %s to %s (family %d): accepted", c.peer, dst, socks[c.i].Family)
				continue
			}
		} else if udpReceived(t, s, c.i, c.ns, netip.Addr{}, dst) {
			t.Errorf("udp from %s to %s (family %d): received", c.peer, dst, socks[c.i].Family)
			continue
		}
		wantInEvent(t, f.b, s, "indeny", 0, c.peer, dst.Port(), proto)
	}
	if got := s.counts(t); got[0]+got[1]+got[2] != 0 {
		t.Errorf("the server accepted %v connections", got[:3])
	}
}

// TestInboundLocalOnly: a local-only program accepts loopback and on-link
// peers and refuses one routed from elsewhere, over TCP and UDP.
func TestInboundLocalOnly(t *testing.T) {
	f := newInFixture(t)
	socks := []inSock{{Proto: "tcp", Family: 46}, {Proto: "udp", Family: 46}}
	exe, s := f.server(t, "inlocal", socks, nil)
	f.b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{exeRule("inlocal", exe, engine.ActionLocalOnly)}})
	for _, c := range []struct {
		ns          netns.NsHandle
		src, dst    netip.Addr
		wantThrough bool
	}{
		{here, netip.Addr{}, lo4, true}, {here, netip.Addr{}, lo6, true},
		{f.ns, f.peer4, f.host4, true}, {f.ns, f.peer6, f.host6, true},
		{f.ns, f.far4, f.host4, false}, {f.ns, f.far6, f.host6, false},
	} {
		got := tcpAccepted(t, c.ns, c.src, netip.AddrPortFrom(c.dst, s.ports[0]))
		if got != c.wantThrough {
			t.Errorf("tcp from %v to %s: accepted %v, want %v", c.src, c.dst, got, c.wantThrough)
		}
		got = udpReceived(t, s, 1, c.ns, c.src, netip.AddrPortFrom(c.dst, s.ports[1]))
		if got != c.wantThrough {
			t.Errorf("udp from %v to %s: received %v, want %v", c.src, c.dst, got, c.wantThrough)
		}
	}
	wantInEvent(t, f.b, s, "inlocal", 0, f.far4, s.ports[0], "tcp")
}

// TestInboundPortEntries: under deny, an entry with a port allows exactly
// that local port (and protocol); an entry limited to "out" opens nothing
// inbound.
func TestInboundPortEntries(t *testing.T) {
	f := newInFixture(t)
	socks := []inSock{{Proto: "tcp", Family: 46}, {Proto: "tcp", Family: 46}, {Proto: "udp", Family: 46}, {Proto: "udp", Family: 46}}
	exe, s := f.server(t, "inports", socks, nil)
	p := s.ports
	any4 := netip.MustParsePrefix("0.0.0.0/0")
	any6 := netip.MustParsePrefix("::/0")
	f.b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{exeRule("inports", exe, engine.ActionDeny,
		engine.Dest{Prefix: any4, PortLo: p[0], PortHi: p[0], Proto: engine.ProtoTCP, Dir: engine.DirIn},
		engine.Dest{Prefix: any6, PortLo: p[0], PortHi: p[0], Proto: engine.ProtoTCP},
		engine.Dest{Prefix: any4, PortLo: p[1], PortHi: p[1], Proto: engine.ProtoTCP, Dir: engine.DirOut},
		engine.Dest{Prefix: any4, PortLo: p[2], PortHi: p[2], Proto: engine.ProtoUDP, Dir: engine.DirIn},
		engine.Dest{Prefix: any4, PortLo: p[0], PortHi: p[0], Proto: engine.ProtoUDP, Dir: engine.DirIn},
	)}})
	check := func(what string, got, want bool) {
		t.Helper()
		if got != want {
			t.Errorf("%s: through %v, want %v", what, got, want)
		}
	}
	check("tcp v4 to the allowed port", tcpAccepted(t, f.ns, netip.Addr{}, netip.AddrPortFrom(f.host4, p[0])), true)
	check("tcp v6 to the allowed port", tcpAccepted(t, f.ns, netip.Addr{}, netip.AddrPortFrom(f.host6, p[0])), true)
	check("tcp to the out-only port", tcpAccepted(t, f.ns, netip.Addr{}, netip.AddrPortFrom(f.host4, p[1])), false)
	check("udp to the allowed port", udpReceived(t, s, 2, f.ns, netip.Addr{}, netip.AddrPortFrom(f.host4, p[2])), true)
	check("udp to a port allowed for another socket's number only", udpReceived(t, s, 3, f.ns, netip.Addr{}, netip.AddrPortFrom(f.host4, p[3])), false)
	check("udp v6 to the port allowed for v4 only", udpReceived(t, s, 2, f.ns, netip.Addr{}, netip.AddrPortFrom(f.host6, p[2])), false)
	wantInEvent(t, f.b, s, "inports", 0, f.peer4, p[1], "tcp")
}

// TestInboundDefaults: an unlisted program under default allow is
// untouched; default deny without default_inbound keeps servers reachable
// (outbound is refused); default_inbound deny refuses them.
func TestInboundDefaults(t *testing.T) {
	f := newInFixture(t)
	socks := []inSock{{Proto: "tcp", Family: 46}, {Proto: "udp", Family: 46}}
	_, s := f.server(t, "inunlisted", socks, nil)
	other := clientCopy(t, f.dir, "inother")
	tcp := netip.AddrPortFrom(f.host4, s.ports[0])
	udp := netip.AddrPortFrom(f.host4, s.ports[1])
	deny := []engine.Rule{exeRule("other", other, engine.ActionDeny)}
	for _, c := range []struct {
		name string
		p    *engine.Policy
		want bool
	}{
		{"default allow", &engine.Policy{Default: engine.ActionAllow, Rules: deny}, true},
		{"default deny, no default_inbound", &engine.Policy{Default: engine.ActionDeny, Rules: deny}, true},
		{"default_inbound deny", &engine.Policy{Default: engine.ActionAllow, DefaultInbound: engine.ActionDeny, InboundSet: true, Rules: deny}, false},
		{"default_inbound local-only, on-link peer", &engine.Policy{Default: engine.ActionDeny, DefaultInbound: engine.ActionLocalOnly, InboundSet: true, Rules: deny}, true},
	} {
		f.b.apply(t, c.p)
		if got := tcpAccepted(t, f.ns, netip.Addr{}, tcp); got != c.want {
			t.Errorf("%s: tcp accepted %v, want %v", c.name, got, c.want)
		}
		if got := udpReceived(t, s, 1, f.ns, netip.Addr{}, udp); got != c.want {
			t.Errorf("%s: udp received %v, want %v", c.name, got, c.want)
		}
	}
	f.b.apply(t, &engine.Policy{Default: engine.ActionAllow, DefaultInbound: engine.ActionDeny, InboundSet: true, Rules: deny})
	tcpAccepted(t, f.ns, netip.Addr{}, tcp)
	wantInEvent(t, f.b, s, "inunlisted", 0, f.peer4, tcp.Port(), "tcp")
}

// TestInboundTighteningCutsAccepted: a connection accepted while the rule
// allowed it is cut when the rule tightens to deny (the sweep judges it as
// inbound: its listener's creator, the peer, the local port).
func TestInboundTighteningCutsAccepted(t *testing.T) {
	f := newInFixture(t)
	exe, s := f.server(t, "intight", []inSock{{Proto: "tcp", Family: 4}, {Proto: "tcp", Family: 4}}, nil)
	f.b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{exeRule("intight", exe, engine.ActionAllow)}})
	cut, err := dialIn(t, f.ns, netip.Addr{}, netip.AddrPortFrom(f.host4, s.ports[0]), time.Second)
	if err != nil {
		t.Fatalf("connection while allowed: %v", err)
	}
	defer cut.Close()
	kept, err := dialIn(t, f.ns, netip.Addr{}, netip.AddrPortFrom(f.host4, s.ports[1]), time.Second)
	if err != nil {
		t.Fatalf("connection while allowed: %v", err)
	}
	defer kept.Close()
	// Deny, but still accept the second port: only the first connection goes.
	f.b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{exeRule("intight", exe, engine.ActionDeny,
		engine.Dest{Prefix: netip.MustParsePrefix("0.0.0.0/0"), PortLo: s.ports[1], PortHi: s.ports[1], Dir: engine.DirIn})}})
	cut.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := cut.Read(make([]byte, 8)); err == nil || isTimeout(err) {
		t.Errorf("the accepted connection the new rule refuses is still open (read: %v)", err)
	}
	kept.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := kept.Read(make([]byte, 8)); !isTimeout(err) {
		t.Errorf("the accepted connection the new rule allows was cut: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestInboundUnprivilegedAttacker: a program under a deny rule running as
// uid 65534 tries to be reached anyway: a second SO_REUSEPORT listener on
// the port of a server its user runs unrestricted (the kernel spreads
// connections over both), and a dual-stack socket taking IPv4 peers as
// mapped addresses, and a listener it hands over (SCM_RIGHTS) to an
// unrestricted process that accepts on it. Its sockets accept nothing,
// whichever path: the judgement follows the socket's creator.
func TestInboundUnprivilegedAttacker(t *testing.T) {
	f := newInFixture(t)
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	good, gs := f.server(t, "ingood", []inSock{{Proto: "tcp", Family: 4, ReusePort: true}}, nobody)
	port := gs.ports[0]
	attackerExe := clientCopy(t, f.dir, "inattacker")
	f.b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		exeRule("good", good, engine.ActionAllow),
		{Name: "nobody", Selector: engine.Selector{User: "nobody"}, Action: engine.ActionDeny},
	}})
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pair[0])
	theirs := os.NewFile(uintptr(pair[1]), "pass")
	as := startInServer(t, attackerExe, f.cg, []inSock{{Proto: "tcp", Family: 4, Port: port, ReusePort: true},
		{Proto: "tcp", Family: 46}, {Proto: "udp", Family: 46}, {Proto: "tcp", Family: 4, Pass: true}}, nobody, theirs)
	theirs.Close()
	// The test process (root, outside the cgroup, unrestricted) accepts on
	// the attacker's listener.
	handed := as.takeListener(t, 3, pair[0])
	var accepted atomic.Int32
	go func() {
		for {
			nfd, _, err := unix.Accept(handed)
			if err != nil {
				return
			}
			accepted.Add(1)
			unix.Write(nfd, []byte("hello\n"))
			unix.Close(nfd)
		}
	}()
	defer unix.Close(handed)
	if tcpAccepted(t, f.ns, netip.Addr{}, netip.AddrPortFrom(f.host4, as.ports[3])) || accepted.Load() != 0 {
		t.Error("the attacker's listener, handed to an unrestricted process, accepted a peer")
	}
	for range 16 {
		// Each dial has its own source port: the reuseport group picks a
		// listener by hash, so some go to the attacker's.
		if c, err := dialIn(t, f.ns, netip.Addr{}, netip.AddrPortFrom(f.host4, port), 300*time.Millisecond); err == nil {
			c.Close()
		}
	}
	if tcpAccepted(t, f.ns, netip.Addr{}, netip.AddrPortFrom(f.host4, as.ports[1])) {
		t.Error("the attacker's dual-stack listener accepted an IPv4 peer")
	}
	if udpReceived(t, as, 2, f.ns, netip.Addr{}, netip.AddrPortFrom(f.host4, as.ports[2])) {
		t.Error("the attacker's dual-stack UDP socket read an IPv4 peer's datagram")
	}
	got, good4 := as.counts(t), gs.counts(t)
	if got[0]+got[1] != 0 {
		t.Errorf("the attacker accepted %v connections", got[:2])
	}
	if good4[0] == 0 {
		t.Error("the unrestricted server of the same user accepted nothing: the test did not reach it")
	}
	wantInEvent(t, f.b, as, "inattacker", 65534, f.peer4, as.ports[1], "tcp")
}

// TestInboundRepliesAreNotInbound: what a program opened is not inbound. A
// deny program allowed out to one peer and port gets that peer's reply to
// its unconnected UDP socket (and its TCP connection's answer), while the
// same peer sending from another port is refused.
func TestInboundRepliesAreNotInbound(t *testing.T) {
	f := newInFixture(t)
	var peerConn, otherConn *net.UDPConn
	inPeer(t, f.ns, func() {
		var err error
		if peerConn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: f.peer4.AsSlice()}); err != nil {
			t.Error(err)
		}
		if otherConn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: f.peer4.AsSlice()}); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	defer peerConn.Close()
	defer otherConn.Close()
	peerPort := uint16(peerConn.LocalAddr().(*net.UDPAddr).Port)
	exe, s := f.server(t, "inreply", []inSock{{Proto: "udp", Family: 4}}, nil)
	f.b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{exeRule("inreply", exe, engine.ActionDeny,
		engine.Dest{Prefix: netip.PrefixFrom(f.peer4, 32), PortLo: peerPort, PortHi: peerPort, Proto: engine.ProtoUDP, Dir: engine.DirOut})}})
	s.send(t, 0, netip.AddrPortFrom(f.peer4, peerPort))
	peerConn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 64)
	_, from, err := peerConn.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("the allowed query did not arrive: %v", err)
	}
	before := s.counts(t)[0]
	peerConn.WriteToUDP([]byte("answer"), from)
	got := false
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline) && !got; time.Sleep(50 * time.Millisecond) {
		got = s.counts(t)[0] > before
	}
	if !got {
		t.Error("the reply from the peer the program sent to was dropped")
	}
	before = s.counts(t)[0]
	otherConn.WriteToUDP([]byte("unasked"), from)
	time.Sleep(300 * time.Millisecond)
	if s.counts(t)[0] > before {
		t.Error("a datagram from the same peer's other port, never sent to, was received")
	}
	wantInEvent(t, f.b, s, "inreply", 0, f.peer4, s.ports[0], "udp")
}

// TestInboundHooksAttachedAndRemoved: the four inbound programs are attached
// to the cgroup only while the policy in force restricts inbound for
// someone (a default_inbound, a deny rule), listed by status then, detached
// when a policy restricting nothing comes into force, adopted by a
// restarted daemon, and gone after a backend that detaches on close.
func TestInboundHooksAttachedAndRemoved(t *testing.T) {
	requireKernel(t)
	kerneltest.RequireTool(t, "bpftool")
	cg := scratchCgroup(t)
	inbound := func() int {
		out, err := exec.Command("bpftool", "cgroup", "show", cg).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(out), "exewall_in")
	}
	pinDir := scratchPinDir(t)
	open := &engine.Policy{Default: engine.ActionDeny, Rules: []engine.Rule{{Name: "u", Selector: engine.Selector{User: "nobody"},
		Action: engine.ActionAllow, Deny: []engine.Dest{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Dir: engine.DirOut}}}}}
	steps := []struct {
		what string
		p    *engine.Policy
		want int
	}{
		{"default deny, an allow rule with an outbound deny entry", open, 0},
		{"default_inbound: deny", &engine.Policy{Default: engine.ActionAllow, DefaultInbound: engine.ActionDeny, InboundSet: true}, len(inboundHooks)},
		{"default: allow", &engine.Policy{Default: engine.ActionAllow}, 0},
		{"a deny rule", &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{{Name: "u", Selector: engine.Selector{User: "nobody"}, Action: engine.ActionDeny}}}, len(inboundHooks)},
	}
	b, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range steps {
		if err := b.Apply(context.Background(), st.p); err != nil {
			t.Fatal(err)
		}
		if n := inbound(); n != st.want {
			t.Errorf("%s: %d inbound programs attached, want %d", st.what, n, st.want)
		}
		if listed := strings.Contains(strings.Join(b.activeHooks(), ","), "ingress"); listed != (st.want > 0) {
			t.Errorf("%s: status hooks %q", st.what, b.activeHooks())
		}
	}
	b.Close() // enforcement (the deny rule's hooks included) stays
	if n := inbound(); n != len(inboundHooks) {
		t.Errorf("%d inbound programs attached after the daemon stopped, want %d", n, len(inboundHooks))
	}
	b, err = New(context.Background(), Config{Cgroup: cg, PinDir: pinDir, DetachOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if n := inbound(); n != len(inboundHooks) || len(b.inboundLinks) != len(inboundHooks) {
		t.Errorf("restarted: %d inbound programs attached, %d adopted, want %d", n, len(b.inboundLinks), len(inboundHooks))
	}
	if err := b.Apply(context.Background(), open); err != nil {
		t.Fatal(err)
	}
	if n := inbound(); n != 0 {
		t.Errorf("restarted, then a policy restricting nothing inbound: %d inbound programs attached", n)
	}
	if err := b.Apply(context.Background(), steps[1].p); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if n := inbound(); n != 0 {
		t.Errorf("%d inbound programs still attached after close", n)
	}
}

// TestInboundSYNFloodFolds: refused SYNs from many peers and ports to one
// listener fold into a few events for (rule, local port) whose counts add
// up to the refused attempts.
func TestInboundSYNFloodFolds(t *testing.T) {
	f := newInFixture(t)
	exe, s := f.server(t, "inflood", []inSock{{Proto: "tcp", Family: 4}}, nil)
	f.b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{exeRule("inflood", exe, engine.ActionDeny)}})
	dst := netip.AddrPortFrom(f.host4, s.ports[0])
	const n = 200
	inPeer(t, f.ns, func() {
		for i := range n {
			src := [2]netip.Addr{f.peer4, f.far4}[i%2]
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Error(err)
				return
			}
			unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()})
			unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()})
			defer unix.Close(fd) // held until the flood is sent: each is one SYN
		}
	})
	var events, attempts uint64
	for _, v := range drainViolations(f.b.Backend, 3*time.Second) {
		if v.Direction == "in" && v.Dport == dst.Port() {
			events++
			attempts += v.Count
		}
	}
	if events == 0 || events > 4 || attempts < n {
		t.Errorf("%d refused SYNs reported as %d events counting %d attempts; want 1 to 4 events counting at least %d", n, events, attempts, n)
	}
}

// TestInboundRefusedWithoutHooks: with the inbound hooks unavailable
// (EXEWALL_TEST_DISABLE=inbound, as on a kernel that refuses them) a policy
// with default_inbound or an "in" entry is refused, never enforced as
// something weaker; with them it is accepted.
func TestInboundRefusedWithoutHooks(t *testing.T) {
	requireKernel(t)
	withIn := &engine.Policy{Default: engine.ActionAllow, DefaultInbound: engine.ActionDeny, InboundSet: true}
	inEntry := &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{{Name: "u", Selector: engine.Selector{User: "nobody"},
		Action: engine.ActionDeny, Allow: []engine.Dest{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), PortLo: 22, PortHi: 22, Dir: engine.DirIn}}}}}
	b := newTestBackend(t, scratchCgroup(t))
	for _, p := range []*engine.Policy{withIn, inEntry} {
		if err := b.Refuse(p); err != nil {
			t.Errorf("refused with the inbound hooks loaded: %v", err)
		}
	}
	t.Setenv(disableEnv, "inbound")
	off := newTestBackend(t, scratchCgroup(t))
	for _, p := range []*engine.Policy{withIn, inEntry} {
		if err := off.Refuse(p); !errors.Is(err, engine.ErrNotSupported) {
			t.Errorf("without the inbound hooks: %v, want ErrNotSupported", err)
		}
	}
	if hooks := strings.Join(off.activeHooks(), ","); strings.Contains(hooks, "ingress") {
		t.Errorf("status lists ingress although it is off: %s", hooks)
	}
}

// TestInboundSyncRepairsDetach: with a policy restricting inbound in force,
// an inbound hook detached behind the daemon's back (bpftool link detach) is
// reported by sync and attached again.
func TestInboundSyncRepairsDetach(t *testing.T) {
	requireKernel(t)
	b := newTestBackend(t, scratchCgroup(t))
	p := &engine.Policy{Default: engine.ActionAllow, DefaultInbound: engine.ActionDeny, InboundSet: true}
	b.apply(t, p)
	l, ok := b.inboundLinks["ingress"]
	if !ok {
		t.Fatal("ingress hook not attached under default_inbound: deny")
	}
	if err := l.(interface{ Detach() error }).Detach(); err != nil {
		t.Fatal(err)
	}
	drifts, err := b.Sync(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	repaired := false
	for _, d := range drifts {
		repaired = repaired || d.Repaired && strings.Contains(d.What, "ingress inbound program was detached")
	}
	if !repaired {
		t.Errorf("drifts %+v: want the ingress hook reported and repaired", drifts)
	}
	if l, ok := b.inboundLinks["ingress"]; !ok || !b.linkOnOurCgroup(l) {
		t.Error("ingress hook not attached again")
	}
}
