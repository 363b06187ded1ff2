//go:build linux

package linux

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The egress hook's fast records (bpf/dns.c, struct dns_fast): per UDP
// source port, the asking rule and the server the program asked, written
// as each datagram to the forwarder leaves. Origin reads them from a
// read-only mapping of the array: no syscall per query. A record being
// written (odd seq, or seq moved during the read), of another address,
// family or port (slots are shared by ports equal in their low bits:
// DNS_FAST_BITS), or absent sends Origin to dns_peers as before.
const (
	fastRecSize  = 48
	fastRecs     = 1 << 13 // DNS_FAST_BITS
	fastOffRule  = 4
	fastOffPeer  = 8
	fastOffAddr  = 24
	fastOffPort  = 40
	fastOffV6    = 44
	fastOffFamly = 45
	fastOffSport = 46
)

// mapFast maps m (nil, or a kernel without mmapable arrays: no fast path).
func (d *diag) mapFast(m *ebpf.Map) {
	if m == nil || m.ValueSize() != fastRecSize || m.MaxEntries() != fastRecs {
		return
	}
	mem, err := unix.Mmap(m.FD(), 0, fastRecSize*fastRecs, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return
	}
	d.fastMu.Lock()
	d.fast = mem
	d.fastMu.Unlock()
}

func (d *diag) unmapFast() {
	d.fastMu.Lock()
	defer d.fastMu.Unlock()
	if d.fast != nil {
		unix.Munmap(d.fast)
		d.fast = nil
	}
}

// fastOrigin reads peer's fast record.
func (d *diag) fastOrigin(peer netip.AddrPort) (rule uint32, server netip.AddrPort, ok bool) {
	d.fastMu.RLock()
	defer d.fastMu.RUnlock()
	if d.fast == nil {
		return 0, server, false
	}
	rec := d.fast[int(peer.Port()&(fastRecs-1))*fastRecSize:][:fastRecSize]
	seqp := (*uint32)(unsafe.Pointer(&rec[0]))
	seq := atomic.LoadUint32(seqp)
	if seq&1 != 0 {
		return 0, server, false
	}
	var r [fastRecSize]byte
	copy(r[:], rec)
	if atomic.LoadUint32(seqp) != seq {
		return 0, server, false
	}
	if binary.NativeEndian.Uint16(r[fastOffSport:]) != peer.Port() {
		return 0, server, false // another port's record
	}
	a := peer.Addr().Unmap()
	switch r[fastOffFamly] {
	case 4:
		if !a.Is4() || [4]byte(r[fastOffPeer:fastOffPeer+4]) != a.As4() {
			return 0, server, false
		}
	case 6:
		if a.Is4() || [16]byte(r[fastOffPeer:fastOffPeer+16]) != a.As16() {
			return 0, server, false
		}
	default:
		return 0, server, false
	}
	var addr [4]uint32
	for i := range addr {
		addr[i] = nativeU32(r[fastOffAddr+4*i:])
	}
	return nativeU32(r[fastOffRule:]), origServer(addr, nativeU32(r[fastOffPort:]), r[fastOffV6] == 1), true
}
