//go:build linux

package linux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Origin implements dnsproxy.Origin: peer is the asking socket's local
// address as the forwarder's socket sees it. The kernel finds that socket
// (sock_diag, by its address pair with the forwarder) and gives its cookie;
// the steering hook recorded, under that cookie, the asking rule and the
// server the program addressed.
func (b *Backend) Origin(peer netip.AddrPort, tcp bool) (rule uint32, server netip.AddrPort, ok bool) {
	b.mu.Lock()
	f, d, peers := b.fwd, b.origin, b.dnsObjs.DnsPeers
	b.mu.Unlock()
	if d == nil {
		return 0, server, false
	}
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	fwd := f.udp4
	switch {
	case tcp && peer.Addr().Is4():
		fwd = f.tcp4
	case tcp:
		fwd = f.tcp6
	case !peer.Addr().Is4():
		fwd = f.udp6
	}
	if !tcp {
		if rule, server, ok := d.fastOrigin(peer); ok {
			originByFast.Add(1)
			return rule, server, true
		}
	}
	cookie, ok := peerCookie(peers, peer, tcp)
	if ok {
		originByEgress.Add(1)
	} else {
		c, err := d.cookie(tcp, peer, fwd)
		if err != nil {
			return 0, server, false
		}
		originByDiag.Add(1)
		cookie = c
	}
	var o datapathDnsOrig
	if err := b.objs.DnsSocks.Lookup(cookie, &o); err != nil {
		return 0, server, false
	}
	if o.Proto == protoTCP != tcp {
		return 0, server, false
	}
	return o.Rule, origServer(o.Addr, o.Port, o.V6 == 1), true
}

// origServer is the server a steered socket asked, from its dns_orig
// fields: the address as the program gave it, the port in network order.
func origServer(a [4]uint32, port uint32, v6 bool) netip.AddrPort {
	var raw [16]byte
	for i, w := range a {
		binary.NativeEndian.PutUint32(raw[4*i:], w)
	}
	var addr netip.Addr
	if v6 {
		addr = netip.AddrFrom16(raw).Unmap()
	} else {
		addr = netip.AddrFrom4([4]byte(raw[:4]))
	}
	var p [4]byte
	binary.NativeEndian.PutUint32(p[:], port)
	return netip.AddrPortFrom(addr, binary.BigEndian.Uint16(p[:2]))
}

// How Origin found the asking socket: by the egress hook's fast record
// (UDP, mmap, no syscall), its dns_peers record, or by asking sock_diag
// (no record). Read by the tests.
var originByFast, originByEgress, originByDiag atomic.Uint64

// noRule is DNS_NO_RULE (bpf/dns.h): a query steered only because a
// learning session runs; its answer binds nothing.
const noRule = 0xffffffff

const (
	protoTCP = 1 // enum proto PROTO_TCP
	protoUDP = 2 // enum proto PROTO_UDP
)

// peerCookie is the cookie of the steered socket the forwarder's peer is,
// as bpf/dns.c's egress hook recorded it when the query left that socket;
// false when there is no record (evicted, or a kernel without the hook):
// then sock_diag is asked.
func peerCookie(m *ebpf.Map, peer netip.AddrPort, tcp bool) (uint64, bool) {
	if m == nil {
		return 0, false
	}
	k := peerKey(peer, tcp)
	var a dnsDnsAsker
	if err := m.Lookup(&k, &a); err != nil {
		return 0, false
	}
	return a.Cookie, true
}

func peerKey(peer netip.AddrPort, tcp bool) dnsDnsPeer {
	k := dnsDnsPeer{Port: peer.Port(), Proto: protoUDP, Family: 4}
	if tcp {
		k.Proto = protoTCP
	}
	if a := peer.Addr().Unmap(); a.Is4() {
		v := a.As4()
		copy(k.Addr[:], v[:])
	} else {
		k.Addr, k.Family = a.As16(), 6
	}
	return k
}

// Asker is the process (tgid) that sent the forwarder's peer's query, as
// the egress hook saw it: a learning session reports lookups by the
// asking program's executable.
func (b *Backend) Asker(peer netip.AddrPort, tcp bool) (int, bool) {
	b.mu.Lock()
	m := b.dnsObjs.DnsPeers
	b.mu.Unlock()
	if m == nil {
		return 0, false
	}
	var a dnsDnsAsker
	k := peerKey(peer, tcp)
	if err := m.Lookup(&k, &a); err != nil || a.Tgid == 0 {
		return 0, false
	}
	return int(a.Tgid), true
}

func nativeU32(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }

// diag asks sock_diag for one socket's cookie over one netlink socket;
// it also holds the egress hook's fast records, mapped (dns_fast.go).
type diag struct {
	mu     sync.Mutex
	fd     int
	seq    uint32
	buf    []byte
	fastMu sync.RWMutex // held to read fast, locked to unmap it
	fast   []byte       // dns_fast (bpf/dns.c), mmapped read-only; nil: none
}

func newDiag() (*diag, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind sock_diag: %w", err)
	}
	tv := unix.Timeval{Sec: 1}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return &diag{fd: fd, buf: make([]byte, 8192)}, nil
}

func (d *diag) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd >= 0 {
		unix.Close(d.fd)
		d.fd = -1
	}
	d.unmapFast()
}

var errNoSocket = errors.New("no such socket")

// cookie finds the socket whose local address is local and whose peer is
// (or, unconnected UDP, may be) remote. TCP is looked up by the socket's
// own (src, dst); UDP by the datagram's (src = remote, dst = local): the
// kernel's udp_dump_one swaps them.
func (d *diag) cookie(tcp bool, local, remote netip.AddrPort) (uint64, error) {
	const (
		hdrLen = unix.SizeofNlMsghdr
		reqLen = 56 // struct inet_diag_req_v2
	)
	fam, proto := uint8(unix.AF_INET), uint8(unix.IPPROTO_UDP)
	if !local.Addr().Is4() {
		fam = unix.AF_INET6
	}
	src, dst := remote, local
	if tcp {
		proto = unix.IPPROTO_TCP
		src, dst = local, remote
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return 0, errors.New("sock_diag closed")
	}
	d.seq++
	msg := make([]byte, hdrLen+reqLen)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(msg[8:], d.seq)
	r := msg[hdrLen:]
	r[0], r[1] = fam, proto
	binary.NativeEndian.PutUint32(r[4:], 0xffffffff) // every state
	id := r[8:]
	binary.BigEndian.PutUint16(id[0:], src.Port())
	binary.BigEndian.PutUint16(id[2:], dst.Port())
	putDiagAddr(id[4:20], src.Addr())
	putDiagAddr(id[20:36], dst.Addr())
	binary.NativeEndian.PutUint32(id[40:], 0xffffffff) // INET_DIAG_NOCOOKIE
	binary.NativeEndian.PutUint32(id[44:], 0xffffffff)
	if err := unix.Sendto(d.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("sock_diag request: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(d.fd, d.buf, 0)
		if err != nil {
			return 0, fmt.Errorf("sock_diag answer: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(d.buf[:n])
		if err != nil {
			return 0, err
		}
		for _, m := range msgs {
			if m.Header.Seq != d.seq {
				continue // a stale answer to a request that timed out
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
						return 0, fmt.Errorf("%w: %w", errNoSocket, unix.Errno(-e))
					}
				}
				return 0, errNoSocket
			case unix.SOCK_DIAG_BY_FAMILY:
				// struct inet_diag_msg: 4 bytes, then inet_diag_sockid
				// whose cookie is at 40.
				if len(m.Data) < 4+48 {
					return 0, errNoSocket
				}
				c := m.Data[44:52]
				return uint64(binary.NativeEndian.Uint32(c)) | uint64(binary.NativeEndian.Uint32(c[4:]))<<32, nil
			}
		}
	}
}

func putDiagAddr(b []byte, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}
