//go:build linux

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

// The learn test's client: copies of the test binary started with
// learnClientEnv connect over TCP to each ADDR:PORT argument, print one
// word per attempt ("ok", or the errno name), then stay alive a moment so
// the daemon can still read their executable when it enriches the events.
// It only talks to loopback and to the test network below.
const learnClientEnv = "EXEWALL_E2E_LEARN_CLIENT"

func init() {
	if os.Getenv(learnClientEnv) == "" {
		return
	}
	var words []string
	for _, arg := range os.Args[1:] {
		ap := netip.MustParseAddrPort(arg)
		if !ap.Addr().IsLoopback() && !learnNet.Contains(ap.Addr()) && !learnHost.Contains(ap.Addr()) {
			fmt.Fprintln(os.Stderr, "the learn client talks to loopback and the test network only")
			os.Exit(2)
		}
		words = append(words, tcpAttempt(ap))
	}
	fmt.Println(strings.Join(words, " "))
	time.Sleep(time.Second)
	os.Exit(0)
}

func tcpAttempt(ap netip.AddrPort) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return errName(err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
	if err == nil || err == unix.ECONNREFUSED {
		return "ok"
	}
	return errName(err)
}

// The test network: a host veth address and its peer (in a namespace the
// test creates) on a /30, and ten "far" hosts in one /24 routed via the
// peer. Benchmarking ranges (198.18.0.0/15), distinct from linux/'s tests.
var (
	learnHost     = netip.MustParsePrefix("198.18.200.0/30")
	learnHostAddr = netip.MustParsePrefix("198.18.200.1/30")
	learnPeerAddr = netip.MustParsePrefix("198.18.200.2/30")
	learnNet      = netip.MustParsePrefix("198.19.200.0/24")
)

func learnFar(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 19, 200, byte(10 + i)}) }

// learnRemote builds the namespace; it returns two ports listening there
// on every address.
func learnRemote(t *testing.T) (port, port2 uint16) {
	t.Helper()
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		bits, _ := a.Mask.Size()
		p := netip.PrefixFrom(ip.Unmap(), bits).Masked()
		if p.Overlaps(learnHost) || p.Overlaps(learnNet) {
			t.Fatalf("this machine uses %s, which overlaps the test network; refusing to add routes", p)
		}
	}
	if routes, err := netlink.RouteGet(learnFar(0).AsSlice()); err == nil && len(routes) > 0 && routes[0].Gw == nil && routes[0].Dst != nil {
		t.Fatalf("%s already routes somewhere (%v); refusing to add routes", learnFar(0), routes)
	}
	hostIf := randName("exl")
	peerIf := hostIf + "p"
	la := netlink.NewLinkAttrs()
	la.Name = hostIf
	veth := &netlink.Veth{LinkAttrs: la, PeerName: peerIf}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("create veth: %v", err)
	}
	t.Cleanup(func() { netlink.LinkDel(veth) })

	type made struct {
		ns        netns.NsHandle
		listeners []net.Listener
		err       error
	}
	ch := make(chan made)
	go func() {
		// This thread enters the new namespace and never leaves it: Go
		// retires a locked thread whose goroutine exits without unlocking.
		runtime.LockOSThread()
		ns, err := netns.New()
		if err != nil {
			ch <- made{err: err}
			return
		}
		var ls []net.Listener
		for i := 0; i < 2; i++ {
			l, err := net.Listen("tcp4", "0.0.0.0:0")
			if err != nil {
				ch <- made{err: err}
				return
			}
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			ls = append(ls, l)
		}
		ch <- made{ns: ns, listeners: ls}
	}()
	m := <-ch
	if m.err != nil {
		t.Fatalf("create namespace: %v", m.err)
	}
	t.Cleanup(func() {
		for _, l := range m.listeners {
			l.Close()
		}
		m.ns.Close()
	})
	peer, err := netlink.LinkByName(peerIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(peer, int(m.ns)); err != nil {
		t.Fatalf("move veth peer: %v", err)
	}
	host, err := netlink.LinkByName(hostIf)
	if err != nil {
		t.Fatal(err)
	}
	learnAddAddr(t, nil, host, learnHostAddr)
	if err := netlink.LinkSetUp(host); err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(m.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	peer, err = h.LinkByName(peerIf)
	if err != nil {
		t.Fatal(err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	learnAddAddr(t, h, peer, learnPeerAddr)
	for i := 0; i < 10; i++ {
		learnAddAddr(t, h, lo, netip.PrefixFrom(learnFar(i), 32))
	}
	for _, l := range []netlink.Link{peer, lo} {
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	gw := func(via netip.Addr) net.IP { return via.AsSlice() }
	if err := h.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Gw: gw(learnHostAddr.Addr())}); err != nil {
		t.Fatalf("return route: %v", err)
	}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: host.Attrs().Index, Dst: &net.IPNet{IP: learnNet.Addr().AsSlice(), Mask: net.CIDRMask(24, 32)}, Gw: gw(learnPeerAddr.Addr())}); err != nil {
		t.Fatalf("route to the test network: %v", err)
	}
	// Nothing is sent unless each destination routes into our veth.
	for _, a := range []netip.Addr{learnPeerAddr.Addr(), learnFar(0), learnFar(9)} {
		routes, err := netlink.RouteGet(a.AsSlice())
		if err != nil || len(routes) == 0 || routes[0].LinkIndex != host.Attrs().Index {
			t.Fatalf("%s does not route to the test veth (%v, %v)", a, routes, err)
		}
	}
	port = uint16(m.listeners[0].Addr().(*net.TCPAddr).Port)
	port2 = uint16(m.listeners[1].Addr().(*net.TCPAddr).Port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(learnFar(0), port).String(), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("test namespace unreachable: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return port, port2
}

func learnAddAddr(t *testing.T, h *netlink.Handle, l netlink.Link, p netip.Prefix) {
	t.Helper()
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
	var err error
	if h == nil {
		err = netlink.AddrAdd(l, a)
	} else {
		err = h.AddrAdd(l, a)
	}
	if err != nil {
		t.Fatalf("add address %s: %v", p, err)
	}
}

// learnRun runs a learn client copy in the scratch cgroup against dests
// and returns its words.
func (w *world) learnRun(exe string, dests ...netip.AddrPort) []string {
	t := w.t
	t.Helper()
	cg, err := os.Open(w.cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	var args []string
	for _, d := range dests {
		args = append(args, d.String())
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), learnClientEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("client %s: %v: %s", exe, err, errOut.String())
	}
	return strings.Fields(out.String())
}

func TestLearnThenApply(t *testing.T) {
	w := newWorld(t)
	port, port2 := learnRemote(t)
	l1, l2 := uint16(listen(t)), uint16(listen(t))
	lo := func(p uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p) }
	far := func(i int, p uint16) netip.AddrPort { return netip.AddrPortFrom(learnFar(i), p) }

	bin := t.TempDir()
	os.Chmod(bin, 0o755)
	localApp := clientCopy(t, bin, "localapp")
	remoteApp := clientCopy(t, bin, "remoteapp")
	blocked := clientCopy(t, bin, "blocked")

	before := fmt.Sprintf("# the policy before learning\ndefault: allow\nmode: enforce\nrules:\n  - name: blocked\n    exe: %s\n    action: deny\n", blocked)
	os.MkdirAll(filepath.Dir(w.policy), 0o755)
	if err := os.WriteFile(w.policy, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	w.start()
	if got := w.learnRun(blocked, lo(l1)); !reflect.DeepEqual(got, []string{"EPERM"}) {
		t.Fatalf("blocked before learning: %v", got)
	}

	out := filepath.Join(w.dir, "learned.yaml")
	learn := exec.Command(exewall, "--socket", w.socket, "learn", "--duration", "6s", "--out", out)
	var learnErr bytes.Buffer
	learn.Stderr = &learnErr
	start := time.Now()
	if err := learn.Start(); err != nil {
		t.Fatal(err)
	}
	learnDone := make(chan error, 1)
	go func() { learnDone <- learn.Wait() }()
	t.Cleanup(func() {
		if learn.ProcessState == nil {
			learn.Process.Kill()
		}
	})
	for {
		var st engine.Status
		json.Unmarshal([]byte(w.ok("status", "--json")), &st)
		if st.Mode == "audit" {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("learning did not start: %s", learnErr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Edits are refused while learning, and nothing is blocked.
	w.refused("mode", "audit")
	if got := w.learnRun(blocked, lo(l1)); !reflect.DeepEqual(got, []string{"ok"}) {
		t.Fatalf("blocked during learning: %v, want ok (audit)", got)
	}
	if got := w.learnRun(localApp, lo(l1), lo(l2)); !reflect.DeepEqual(got, []string{"ok", "ok"}) {
		t.Fatalf("localapp: %v", got)
	}
	var dests []netip.AddrPort
	for i := 0; i < 10; i++ {
		dests = append(dests, far(i, port))
	}
	dests = append(dests, lo(l1))
	if got := w.learnRun(remoteApp, dests...); strings.Count(strings.Join(got, " "), "ok") != 11 {
		t.Fatalf("remoteapp: %v", got)
	}
	select {
	case err := <-learnDone:
		if err != nil {
			t.Fatalf("learn: %v: %s", err, learnErr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("learn did not end: %s", learnErr.String())
	}
	if !strings.Contains(learnErr.String(), "wrote "+out) {
		t.Fatalf("learn stderr: %q", learnErr.String())
	}

	// The previous policy is back exactly: file untouched, blocked denied.
	if data, _ := os.ReadFile(w.policy); string(data) != before {
		t.Fatalf("policy file changed by learning:\n%s", data)
	}
	if got := w.learnRun(blocked, lo(l1)); !reflect.DeepEqual(got, []string{"EPERM"}) {
		t.Fatalf("blocked after learning: %v", got)
	}

	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("learned policy:\n%s", data)
	p, err := engine.Parse(data)
	if err != nil {
		t.Fatalf("learned policy does not parse: %v", err)
	}
	got := engine.ViewPolicy(p)
	want := engine.PolicyView{Default: "allow", Mode: "enforce", Rules: []engine.RuleView{
		{Name: "blocked", Exe: blocked, Action: "deny"},
		{Name: "localapp", Exe: localApp, Action: "local-only"},
		{Name: "remoteapp", Exe: remoteApp, Action: "deny", Allow: []string{
			fmt.Sprintf("127.0.0.1/32 port %d tcp", l1), fmt.Sprintf("198.19.200.0/24 port %d tcp", port)}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("learned:\n got %+v\nwant %+v", got, want)
	}
	for _, s := range []string{"# observed " + remoteApp + ": 11 attempts to 11 destinations", "10 attempts to 10 addresses", "only local destinations"} {
		if !bytes.Contains(data, []byte(s)) {
			t.Errorf("learned policy lacks the comment %q", s)
		}
	}

	// diff exits 1 when there are changes, like diff(1).
	r := w.cli("diff", out)
	if r.code != 1 {
		t.Fatalf("diff of the learned policy: exit %d, want 1: %s", r.code, r.stderr)
	}
	diff := r.stdout
	for _, s := range []string{"+ rule localapp: local-only exe " + localApp, "+ rule remoteapp: deny exe " + remoteApp, "2 added, 0 removed, 0 changed"} {
		if !strings.Contains(diff, s) {
			t.Errorf("diff lacks %q:\n%s", s, diff)
		}
	}
	bad := filepath.Join(w.dir, "bad.yaml")
	os.WriteFile(bad, []byte("default: allow\nrules:\n  - name: x\n    exe: /bin/true\n    action: maybe\n"), 0o644)
	if r := w.cli("diff", bad); r.code != 2 || !strings.Contains(r.stderr, "line 5") {
		t.Errorf("diff of an invalid file: exit %d, %q; want 2 and the line", r.code, r.stderr)
	}

	// Applied, the learned policy allows what they did and no more.
	w.ok("apply", "-f", out)
	if got := w.learnRun(localApp, lo(l1), lo(l2), far(0, port)); !reflect.DeepEqual(got, []string{"ok", "ok", "EPERM"}) {
		t.Fatalf("localapp after apply: %v, want ok ok EPERM", got)
	}
	if got := w.learnRun(remoteApp, append(dests, far(0, port2), lo(l2), netip.AddrPortFrom(learnPeerAddr.Addr(), port))...); !reflect.DeepEqual(got,
		[]string{"ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "EPERM", "EPERM", "EPERM"}) {
		t.Fatalf("remoteapp after apply: %v, want 11 ok then EPERM for a new port, a new loopback port, a new host", got)
	}
	if diff := w.ok("diff", out); !strings.HasPrefix(diff, "no changes") {
		t.Errorf("diff after apply: %s", diff)
	}
}

// TestLearnEndsWhenClientDies: a learn command killed without a chance to
// clean up leaves the daemon to end the session by itself (its lease) and
// put the previous policy back.
func TestLearnEndsWhenClientDies(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 30 s lease")
	}
	w := newWorld(t)
	w.start()
	learn := exec.Command(exewall, "--socket", w.socket, "learn")
	if err := learn.Start(); err != nil {
		t.Fatal(err)
	}
	mode := func() string {
		var st engine.Status
		json.Unmarshal([]byte(w.ok("status", "--json")), &st)
		return st.Mode
	}
	for start := time.Now(); mode() != "audit"; time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			learn.Process.Kill()
			t.Fatal("learning did not start")
		}
	}
	learn.Process.Kill()
	learn.Wait()
	for start := time.Now(); mode() != "enforce"; time.Sleep(200 * time.Millisecond) {
		if time.Since(start) > 45*time.Second {
			t.Fatal("the session outlived its dead client by more than its lease")
		}
	}
	w.ok("mode", "audit") // edits accepted again
}
