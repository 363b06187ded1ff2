//go:build linux

package linux

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

// TestDiagListenersAsNetlink checks the listeners-only dump against the
// library's dump of every socket: the same listeners and bound UDP sockets,
// with the same inodes and cookies, and nothing else.
func TestDiagListenersAsNetlink(t *testing.T) {
	tcp4, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Skipf("listen: %v", err)
	}
	defer tcp4.Close()
	tcp6, err := net.Listen("tcp6", "[::]:0")
	if err == nil {
		defer tcp6.Close()
	}
	// A connection (established, in both directions) must not be listed.
	c, err := net.Dial("tcp4", tcp4.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var udp net.PacketConn
	for port := 20000; port < 20100 && udp == nil; port++ {
		udp, _ = net.ListenPacket("udp4", netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(port)).String())
	}
	if udp == nil {
		t.Skip("no free UDP port below the ephemeral range")
	}
	defer udp.Close()

	got, err := diagListeners()
	if err != nil {
		t.Fatal(err)
	}
	want := netlinkListeners(t)
	gotSet := map[diagSock]bool{}
	for _, s := range got {
		gotSet[s] = true
	}
	if len(got) != len(want) {
		t.Errorf("got %d sockets, the full dump has %d:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	for _, s := range want {
		if !gotSet[s] {
			t.Errorf("missing %+v", s)
		}
	}
	port := func(a net.Addr) uint16 { return netip.MustParseAddrPort(a.String()).Port() }
	for _, w := range []struct {
		proto engine.Proto
		port  uint16
	}{{engine.ProtoTCP, port(tcp4.Addr())}, {engine.ProtoUDP, port(udp.LocalAddr())}} {
		found := false
		for _, s := range got {
			found = found || s.proto == w.proto && s.local.Port() == w.port && s.cookie != 0 && s.inode != 0
		}
		if !found {
			t.Errorf("%v port %d not listed (with inode and cookie): %v", w.proto, w.port, got)
		}
	}
}

// netlinkListeners is what diagListeners found before it asked for
// listeners only: every socket dumped, then filtered.
func netlinkListeners(t *testing.T) []diagSock {
	lo, hi := ephemeralRange()
	var out []diagSock
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		tcp, err := netlink.SocketDiagTCP(fam)
		if err != nil {
			t.Fatal(err)
		}
		udp, err := netlink.SocketDiagUDP(fam)
		if err != nil {
			t.Fatal(err)
		}
		add := func(s *netlink.Socket, proto engine.Proto) {
			a, ok := netip.AddrFromSlice(s.ID.Source)
			if !ok {
				return
			}
			if fam == unix.AF_INET {
				a = a.Unmap()
			}
			if a.Unmap().IsLoopback() || s.ID.SourcePort == 0 || s.INode == 0 {
				return
			}
			out = append(out, diagSock{proto: proto, local: netip.AddrPortFrom(a, s.ID.SourcePort), inode: s.INode,
				cookie: uint64(s.ID.Cookie[0]) | uint64(s.ID.Cookie[1])<<32})
		}
		for _, s := range tcp {
			if s.State == tcpListen {
				add(s, engine.ProtoTCP)
			}
		}
		for _, s := range udp {
			if s.State == udpClosed && len(s.ID.Destination) > 0 && net.IP(s.ID.Destination).IsUnspecified() &&
				(s.ID.SourcePort < lo || s.ID.SourcePort > hi) {
				add(s, engine.ProtoUDP)
			}
		}
	}
	return out
}
