//go:build linux

package linux

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// remoteNet is a host in a network namespace the test creates, reached from
// the test's namespace over a veth pair. Its addresses are documentation
// ranges routed only to that veth, so no test traffic can leave the machine.
type remoteNet struct {
	port    uint16
	onLink4 netip.Addr // the peer's veth address: on the host's on-link subnet
	onLink6 netip.Addr
	far4    netip.Addr // routed via the peer: neither local nor on-link
	far6    netip.Addr
	subnet4 netip.Prefix
	subnet6 netip.Prefix
}

var (
	hostAddr4 = netip.MustParsePrefix("198.51.100.1/30")
	peerAddr4 = netip.MustParsePrefix("198.51.100.2/30")
	hostAddr6 = netip.MustParsePrefix("2001:db8:e0::1/64")
	peerAddr6 = netip.MustParsePrefix("2001:db8:e0::2/64")
	farAddr4  = netip.MustParseAddr("203.0.113.10")
	farAddr6  = netip.MustParseAddr("2001:db8:e1::10")
)

// newRemoteNet builds the namespace with TCP listeners on every address.
func newRemoteNet(t *testing.T) *remoteNet {
	t.Helper()
	checkTestRangesFree(t)
	hostIf := randName("exw")
	peerIf := hostIf + "p"
	la := netlink.NewLinkAttrs()
	la.Name = hostIf
	veth := &netlink.Veth{LinkAttrs: la, PeerName: peerIf}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("create veth: %v", err)
	}
	t.Cleanup(func() { netlink.LinkDel(veth) })

	ns, listeners, port := newNamespaceWithListeners(t)
	t.Cleanup(func() {
		for _, l := range listeners {
			l.Close()
		}
		ns.Close()
	})

	peer, err := netlink.LinkByName(peerIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(peer, int(ns)); err != nil {
		t.Fatalf("move veth peer: %v", err)
	}
	host, err := netlink.LinkByName(hostIf)
	if err != nil {
		t.Fatal(err)
	}
	addAddr(t, nil, host, hostAddr4)
	addAddr(t, nil, host, hostAddr6)
	if err := netlink.LinkSetUp(host); err != nil {
		t.Fatal(err)
	}

	h, err := netlink.NewHandleAt(ns)
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
	addAddr(t, h, peer, peerAddr4)
	addAddr(t, h, peer, peerAddr6)
	addAddr(t, h, lo, netip.PrefixFrom(farAddr4, 32))
	addAddr(t, h, lo, netip.PrefixFrom(farAddr6, 128))
	for _, l := range []netlink.Link{peer, lo} {
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	// Return routes inside the namespace, routes to the far hosts outside.
	addRoute(t, h, peer.Attrs().Index, netip.MustParsePrefix("0.0.0.0/0"), hostAddr4.Addr())
	addRoute(t, h, peer.Attrs().Index, netip.MustParsePrefix("::/0"), hostAddr6.Addr())
	addRoute(t, nil, host.Attrs().Index, netip.PrefixFrom(farAddr4, 32), peerAddr4.Addr())
	addRoute(t, nil, host.Attrs().Index, netip.PrefixFrom(farAddr6, 128), peerAddr6.Addr())

	// Refuse to send anything unless each destination really routes into
	// our veth: a broken setup must not leak traffic to a real network.
	for _, a := range []netip.Addr{peerAddr4.Addr(), peerAddr6.Addr(), farAddr4, farAddr6} {
		routes, err := netlink.RouteGet(a.AsSlice())
		if err != nil || len(routes) == 0 || routes[0].LinkIndex != host.Attrs().Index {
			t.Fatalf("%s does not route to the test veth (%v, %v)", a, routes, err)
		}
	}
	rn := &remoteNet{port: port, onLink4: peerAddr4.Addr(), onLink6: peerAddr6.Addr(), far4: farAddr4, far6: farAddr6,
		subnet4: hostAddr4.Masked(), subnet6: hostAddr6.Masked()}
	rn.waitReachable(t)
	return rn
}

func addAddr(t *testing.T, h *netlink.Handle, l netlink.Link, p netip.Prefix) {
	t.Helper()
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD // usable at once, no duplicate address detection wait
	}
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

func addRoute(t *testing.T, h *netlink.Handle, ifindex int, dst netip.Prefix, gw netip.Addr) {
	t.Helper()
	r := &netlink.Route{LinkIndex: ifindex, Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())}, Gw: gw.AsSlice()}
	var err error
	if h == nil {
		err = netlink.RouteAdd(r)
	} else {
		err = h.RouteAdd(r)
	}
	if err != nil {
		t.Fatalf("add route %s via %s: %v", dst, gw, err)
	}
}

// newNamespaceWithListeners creates a network namespace and, from a thread
// switched into it, TCP listeners on the wildcard addresses of one port.
func newNamespaceWithListeners(t *testing.T) (netns.NsHandle, []net.Listener, uint16) {
	t.Helper()
	type result struct {
		ns        netns.NsHandle
		listeners []net.Listener
		port      uint16
		err       error
	}
	ch := make(chan result)
	go func() {
		// This thread enters the new namespace and never leaves it: Go
		// retires a locked thread that exits without unlocking.
		runtime.LockOSThread()
		ns, err := netns.New()
		if err != nil {
			ch <- result{err: err}
			return
		}
		l4, err := net.Listen("tcp4", "0.0.0.0:0")
		if err != nil {
			ch <- result{err: err}
			return
		}
		port := l4.Addr().(*net.TCPAddr).Port
		l6, err := net.Listen("tcp6", fmt.Sprintf("[::]:%d", port))
		if err != nil {
			ch <- result{err: err}
			return
		}
		go acceptAll(l4)
		go acceptAll(l6)
		ch <- result{ns: ns, listeners: []net.Listener{l4, l6}, port: uint16(port)}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("create namespace: %v", r.err)
	}
	return r.ns, r.listeners, r.port
}

// waitReachable waits until the namespace answers TCP from here (the veth
// needs a moment to come up).
func (rn *remoteNet) waitReachable(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, a := range []netip.Addr{rn.far4, rn.far6} {
		for {
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(a, rn.port).String(), time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("test namespace host %s unreachable: %v", a, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// checkTestRangesFree refuses to build the test network when the machine
// already uses one of its ranges: the routes would shadow real ones.
func checkTestRangesFree(t *testing.T) {
	t.Helper()
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	mine := []netip.Prefix{hostAddr4.Masked(), hostAddr6.Masked(), netip.PrefixFrom(farAddr4, 24).Masked(), netip.PrefixFrom(farAddr6, 48).Masked()}
	for _, a := range addrs {
		p, ok := onLink(*a.IPNet)
		if !ok {
			continue
		}
		for _, m := range mine {
			if m.Overlaps(p) {
				t.Fatalf("this machine uses %s, which overlaps the test network %s; refusing to add routes", p, m)
			}
		}
	}
}
