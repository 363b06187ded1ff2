//go:build linux

package kerneltest

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

// HostConfig describes a remote host for a test: a network namespace
// reached over a veth pair, with addresses in documentation or benchmarking
// ranges routed only to that veth, so no test traffic leaves the machine.
type HostConfig struct {
	Host4, Peer4 netip.Prefix // the veth pair's IPv4 addresses (one subnet)
	Host6, Peer6 netip.Prefix // and IPv6 ones; zero: no IPv6
	Far          []netip.Addr // hosts on the peer's loopback, routed via the peer
	Listeners    int          // TCP ports listening on every address there (0: one)
}

// Host is a namespace made by NewHost.
type Host struct {
	Ports []uint16       // the listening ports
	NS    netns.NsHandle // the namespace, for peers that dial from it (closed when the test ends)
}

// NewHost builds the namespace and its routes, and removes them when the
// test ends. It refuses when the machine already uses one of the ranges.
func NewHost(t testing.TB, cfg HostConfig) *Host {
	t.Helper()
	checkRangesFree(t, cfg)
	var ns netns.NsHandle
	var ports []uint16
	host, peer, lo, h := vethInto(t, "exw", func() netns.NsHandle {
		ns, ports = newNamespace(t, max(cfg.Listeners, 1), cfg.Host6.IsValid())
		return ns
	})
	defer h.Close()
	outside := netlink.Handle{}
	pairs := [][2]netip.Prefix{{cfg.Host4, cfg.Peer4}}
	if cfg.Host6.IsValid() {
		pairs = append(pairs, [2]netip.Prefix{cfg.Host6, cfg.Peer6})
	}
	for _, pair := range pairs {
		addAddr(t, &outside, host, pair[0])
		addAddr(t, h, peer, pair[1])
	}
	for _, a := range cfg.Far {
		addAddr(t, h, lo, netip.PrefixFrom(a, a.BitLen()))
	}
	if err := netlink.LinkSetUp(host); err != nil {
		t.Fatal(err)
	}
	for _, l := range []netlink.Link{peer, lo} {
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	// Return routes inside the namespace, routes to the far hosts outside.
	for _, pair := range pairs {
		def := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if pair[0].Addr().Is6() {
			def = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		addRoute(t, h, peer.Attrs().Index, def, pair[0].Addr())
	}
	for _, a := range cfg.Far {
		via := cfg.Peer4.Addr()
		if a.Is6() {
			via = cfg.Peer6.Addr()
		}
		addRoute(t, &outside, host.Attrs().Index, netip.PrefixFrom(a, a.BitLen()), via)
	}
	// Refuse to send anything unless each destination really routes into
	// the veth: a broken setup must not leak traffic to a real network.
	for _, a := range append([]netip.Addr{cfg.Peer4.Addr()}, cfg.Far...) {
		routes, err := netlink.RouteGet(a.AsSlice())
		if err != nil || len(routes) == 0 || routes[0].LinkIndex != host.Attrs().Index {
			t.Fatalf("%s does not route to the test veth (%v, %v)", a, routes, err)
		}
	}
	waitReachable(t, cfg.Far, ports[0])
	return &Host{Ports: ports, NS: ns}
}

func addAddr(t testing.TB, h *netlink.Handle, l netlink.Link, p netip.Prefix) {
	t.Helper()
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD // usable at once, no duplicate address detection wait
	}
	if err := h.AddrAdd(l, a); err != nil {
		t.Fatalf("add address %s: %v", p, err)
	}
}

func addRoute(t testing.TB, h *netlink.Handle, ifindex int, dst netip.Prefix, gw netip.Addr) {
	t.Helper()
	r := &netlink.Route{LinkIndex: ifindex, Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())}, Gw: gw.AsSlice()}
	if err := h.RouteAdd(r); err != nil {
		t.Fatalf("add route %s via %s: %v", dst, gw, err)
	}
}

// newNamespace creates a network namespace and, from a thread switched
// into it, n TCP listening ports on the wildcard addresses.
func newNamespace(t testing.TB, n int, v6 bool) (netns.NsHandle, []uint16) {
	t.Helper()
	type result struct {
		ns        netns.NsHandle
		listeners []net.Listener
		err       error
	}
	ch := make(chan result)
	go func() {
		// This thread enters the new namespace and never leaves it: Go
		// retires a locked thread whose goroutine exits without unlocking.
		runtime.LockOSThread()
		ns, err := netns.New()
		if err != nil {
			ch <- result{err: err}
			return
		}
		var ls []net.Listener
		for range n {
			l4, err := net.Listen("tcp4", "0.0.0.0:0")
			if err != nil {
				ch <- result{err: err}
				return
			}
			ls = append(ls, l4)
			if v6 {
				l6, err := net.Listen("tcp6", fmt.Sprintf("[::]:%d", l4.Addr().(*net.TCPAddr).Port))
				if err != nil {
					ch <- result{err: err}
					return
				}
				ls = append(ls, l6)
			}
		}
		for _, l := range ls {
			go acceptAll(l)
		}
		ch <- result{ns: ns, listeners: ls}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("create namespace: %v", r.err)
	}
	t.Cleanup(func() {
		for _, l := range r.listeners {
			l.Close()
		}
		r.ns.Close()
	})
	var ports []uint16
	for _, l := range r.listeners {
		if p := uint16(l.Addr().(*net.TCPAddr).Port); len(ports) == 0 || ports[len(ports)-1] != p {
			ports = append(ports, p)
		}
	}
	return r.ns, ports
}

// waitReachable waits until the namespace answers TCP from here (the veth
// needs a moment to come up).
func waitReachable(t testing.TB, addrs []netip.Addr, port uint16) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, a := range addrs {
		for {
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(a, port).String(), time.Second)
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

// checkRangesFree refuses to build the test network when the machine
// already uses one of its ranges: the routes would shadow real ones.
func checkRangesFree(t testing.TB, cfg HostConfig) {
	t.Helper()
	mine := []netip.Prefix{cfg.Host4.Masked()}
	if cfg.Host6.IsValid() {
		mine = append(mine, cfg.Host6.Masked())
	}
	for _, a := range cfg.Far {
		bits := 24
		if a.Is6() {
			bits = 48
		}
		mine = append(mine, netip.PrefixFrom(a, bits).Masked())
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		p := netip.PrefixFrom(ip.Unmap(), ones).Masked()
		for _, m := range mine {
			if m.Overlaps(p) {
				t.Fatalf("this machine uses %s, which overlaps the test network %s; refusing to add routes", p, m)
			}
		}
	}
}

// vethInto creates a veth pair named after prefix (removed when the test
// ends), moves its peer into the namespace newNS makes, and returns the
// host end, the peer end and the namespace's lo (seen through h, a handle
// in the namespace the caller closes).
func vethInto(t testing.TB, prefix string, newNS func() netns.NsHandle) (host, peer, lo netlink.Link, h *netlink.Handle) {
	t.Helper()
	hostIf := Name(prefix)
	peerIf := hostIf + "p"
	la := netlink.NewLinkAttrs()
	la.Name = hostIf
	veth := &netlink.Veth{LinkAttrs: la, PeerName: peerIf}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("create veth: %v", err)
	}
	t.Cleanup(func() { netlink.LinkDel(veth) })
	ns := newNS()
	peer, err := netlink.LinkByName(peerIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(peer, int(ns)); err != nil {
		t.Fatalf("move veth peer: %v", err)
	}
	if host, err = netlink.LinkByName(hostIf); err != nil {
		t.Fatal(err)
	}
	if h, err = netlink.NewHandleAt(ns); err != nil {
		t.Fatal(err)
	}
	if peer, err = h.LinkByName(peerIf); err != nil {
		h.Close()
		t.Fatal(err)
	}
	if lo, err = h.LinkByName("lo"); err != nil {
		h.Close()
		t.Fatal(err)
	}
	return host, peer, lo, h
}
