//go:build linux

package kerneltest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Net is a network namespace reached over a veth pair, with two blocks
// routed only to that veth, in which every address is a host of the
// namespace (a local route, as 127.0.0.0/8 is on loopback): Block4, a /24
// of 198.19.0.0/16 (benchmarking), and Block6, a /64 of 2001:db8::/32
// (documentation). Servers of the test run inside it (Listen, ServeDNS):
// the only hosts the programs under test reach.
type Net struct {
	NS     netns.NsHandle
	Block4 netip.Prefix
	Block6 netip.Prefix
}

// NewNet builds the namespace on a /23 of 198.19.0.0/16 and two /64s no
// address or route of this machine overlaps, and removes it all when the
// test ends.
func NewNet(t testing.TB) *Net {
	t.Helper()
	var k int
	for tries := 0; ; tries++ {
		k = 2 * (10 + rand.IntN(110)) // 198.19.20.0/23 .. 198.19.238.0/23
		if netFree(t, netip.MustParsePrefix(fmt.Sprintf("198.19.%d.0/23", k)), netip.MustParsePrefix(fmt.Sprintf("2001:db8:53:%x::/63", k))) {
			break
		}
		if tries == 20 {
			t.Fatal("no free test network in 198.19.0.0/16")
		}
	}
	link4h := netip.MustParsePrefix(fmt.Sprintf("198.19.%d.1/30", k))
	link4p := netip.MustParsePrefix(fmt.Sprintf("198.19.%d.2/30", k))
	link6h := netip.MustParsePrefix(fmt.Sprintf("2001:db8:53:%x::1/64", k))
	link6p := netip.MustParsePrefix(fmt.Sprintf("2001:db8:53:%x::2/64", k))
	n := &Net{Block4: netip.MustParsePrefix(fmt.Sprintf("198.19.%d.0/24", k+1)),
		Block6: netip.MustParsePrefix(fmt.Sprintf("2001:db8:53:%x::/64", k+1))}

	host, peer, lo, h := vethInto(t, "exn", func() netns.NsHandle {
		n.NS, _ = newNamespace(t, 1, true)
		return n.NS
	})
	defer h.Close()
	outside := &netlink.Handle{}
	addAddr(t, outside, host, link4h)
	addAddr(t, outside, host, link6h)
	addAddr(t, h, peer, link4p)
	addAddr(t, h, peer, link6p)
	if err := netlink.LinkSetUp(host); err != nil {
		t.Fatal(err)
	}
	for _, l := range []netlink.Link{peer, lo} {
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []netip.Prefix{n.Block4, n.Block6} {
		local := &netlink.Route{LinkIndex: lo.Attrs().Index, Dst: ipNet(b), Type: unix.RTN_LOCAL, Table: unix.RT_TABLE_LOCAL, Scope: netlink.SCOPE_HOST}
		if err := h.RouteAdd(local); err != nil {
			t.Fatalf("local route %s in the namespace: %v", b, err)
		}
	}
	addRoute(t, h, peer.Attrs().Index, netip.MustParsePrefix("0.0.0.0/0"), link4h.Addr())
	addRoute(t, h, peer.Attrs().Index, netip.MustParsePrefix("::/0"), link6h.Addr())
	addRoute(t, outside, host.Attrs().Index, n.Block4, link4p.Addr())
	addRoute(t, outside, host.Attrs().Index, n.Block6, link6p.Addr())
	// Refuse to go on unless the blocks really route into the veth: a
	// broken setup must not leak traffic to a real network.
	for _, a := range []netip.Addr{n.Addr4(1), n.Addr6(1)} {
		routes, err := netlink.RouteGet(a.AsSlice())
		if err != nil || len(routes) == 0 || routes[0].LinkIndex != host.Attrs().Index {
			t.Fatalf("%s does not route to the test veth (%v, %v)", a, routes, err)
		}
	}
	return n
}

// netFree says whether no address or route of this machine overlaps p4
// or p6.
func netFree(t testing.TB, p4, p6 netip.Prefix) bool {
	t.Helper()
	overlaps := func(ip net.IP, ones int) bool {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return false
		}
		p := netip.PrefixFrom(a.Unmap(), ones).Masked()
		return p.Overlaps(p4) || p.Overlaps(p6)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if overlaps(a.IP, ones) {
			return false
		}
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue // the default route overlaps everything
		}
		ones, _ := r.Dst.Mask.Size()
		if ones > 0 && overlaps(r.Dst.IP, ones) {
			return false
		}
	}
	return true
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Addr4 is host i of Block4, Addr6 host i of Block6.
func (n *Net) Addr4(i int) netip.Addr {
	b := n.Block4.Addr().As4()
	b[3] = byte(i)
	return netip.AddrFrom4(b)
}

func (n *Net) Addr6(i int) netip.Addr {
	b := n.Block6.Addr().As16()
	b[14], b[15] = byte(i>>8), byte(i)
	return netip.AddrFrom16(b)
}

// Inside runs f on an OS thread that has joined the namespace: sockets f
// creates belong to it for good. The thread is discarded afterwards.
func (n *Net) Inside(t testing.TB, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := netns.Set(n.NS); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("in the test namespace: %v", err)
	}
}

// Listen serves TCP on ap inside the namespace (an unspecified address:
// every host of the blocks) with handle, one goroutine per connection,
// until the test ends; port 0 picks one. It returns the port.
func (n *Net) Listen(t testing.TB, ap netip.AddrPort, handle func(net.Conn)) uint16 {
	t.Helper()
	var l net.Listener
	n.Inside(t, func() (err error) {
		l, err = freebind.Listen(context.Background(), "tcp", ap.String())
		return err
	})
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// ServeDNS answers DNS on ap inside the namespace, over UDP and TCP (two
// byte length prefix), with answer (nil: no reply), until the test ends.
func (n *Net) ServeDNS(t testing.TB, ap netip.AddrPort, answer func(q []byte, tcp bool) []byte) {
	t.Helper()
	var pc net.PacketConn
	n.Inside(t, func() (err error) {
		pc, err = freebind.ListenPacket(context.Background(), "udp", ap.String())
		return err
	})
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			m, from, err := pc.ReadFrom(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			if out := answer(buf[:m], false); out != nil {
				pc.WriteTo(out, from)
			}
		}
	}()
	n.Listen(t, ap, func(c net.Conn) {
		for {
			var l [2]byte
			if _, err := readFull(c, l[:]); err != nil {
				return
			}
			q := make([]byte, int(l[0])<<8|int(l[1]))
			if _, err := readFull(c, q); err != nil {
				return
			}
			out := answer(q, true)
			if out == nil {
				return
			}
			if _, err := c.Write(append([]byte{byte(len(out) >> 8), byte(len(out))}, out...)); err != nil {
				return
			}
		}
	})
}

// freebind binds addresses of the blocks, which are local by a route, not
// an interface address: IPv6 wants IP_FREEBIND for that.
var freebind = net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
	var err error
	c.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1) })
	return err
}}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
