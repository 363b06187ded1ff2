//go:build linux

package linux

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

var _ engine.ListenerLister = (*Backend)(nil)

// TCP states as sock_diag reports them.
const (
	tcpListen = 10
	udpClosed = 7 // an unconnected UDP socket: bound, hears from anyone
)

// Listeners implements engine.ListenerLister: the TCP listeners and bound,
// unconnected UDP sockets on non-loopback addresses of this network
// namespace (sock_diag: the kernel's tables, sockets made before exewall
// started included) whose owning process is under the attach cgroup.
//
// The owner is found through /proc/<pid>/fd (the lowest pid holding the
// socket). Its identity is the one the datapath uses: the creator record
// the kernel keeps on the socket when there is one (TCP listeners, through
// the socket iterator), else the running executable's identity as the
// resolver reads it from /proc/<pid>/exe, with the process's cgroup, uid
// and gid.
//
// UDP sockets bound to a port in the ephemeral range
// (net.ipv4.ip_local_port_range) are left out: those are clients' sockets
// the kernel bound on the first send (a resolver's, QUIC's), whose replies
// are not inbound.
func (b *Backend) Listeners(ctx context.Context) ([]engine.Listener, error) {
	socks, records, err := b.diagListenersOwned()
	if err != nil {
		return nil, err
	}
	// Loopback listeners are never cut (the interface lets them be left
	// out): no owner search for them.
	socks = slices.DeleteFunc(socks, func(s diagSock) bool {
		return s.local.Addr().Unmap().IsLoopback() || s.local.Port() == 0
	})
	if len(socks) == 0 {
		return nil, nil
	}
	inodes := map[uint32]bool{}
	for _, s := range socks {
		inodes[s.inode] = true
	}
	owners, err := socketOwners(inodes, b.attachedPIDs())
	if err != nil {
		return nil, err
	}
	if records == nil {
		records = b.listenerRecords()
	}
	base := "/" + strings.Trim(strings.TrimPrefix(b.cgroupPath, b.cgroupRoot), "/")
	procs := map[int]*procInfo{}
	cgPaths := map[uint64]string{}
	var out []engine.Listener
	for _, s := range socks {
		pid, ok := owners[s.inode]
		if !ok {
			continue
		}
		pi := procs[pid]
		if pi == nil {
			pi = b.readProc(pid)
			procs[pid] = pi
		}
		if pi.err != nil || !engine.CgroupContains(base, pi.subject.Cgroup) {
			continue
		}
		l := engine.Listener{Owner: pi.subject, PID: uint32(pid), Comm: pi.comm, Exe: pi.exe, Proto: s.proto, Local: s.local}
		if o, ok := records[s.cookie]; ok {
			l.Owner = b.ownerSubject(o, pi.subject, cgPaths)
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Local.Port() < out[j].Local.Port() })
	return out, nil
}

type diagSock struct {
	proto  engine.Proto
	local  netip.AddrPort
	inode  uint32
	cookie uint64
}

// diagListenersOwned is diagListeners with the creator record of each
// listener (sock_owners), by cookie, read in the same dump: the sockets
// iterator would walk the established hash for them, 2.5 ms of every CLI
// change on this VM. records is nil when the kernel would not dump the
// records (listenerRecords is then the way).
func (b *Backend) diagListenersOwned() (socks []diagSock, records map[uint64]datapathSockOwner, err error) {
	if b.objs.SockOwners != nil {
		var values map[uint64][]byte
		socks, values, err = diagListenersWith(b.objs.SockOwners.FD())
		if err == nil {
			records = map[uint64]datapathSockOwner{}
			for _, s := range socks {
				var o datapathSockOwner
				v := values[s.cookie]
				// (TCP's alone, as listenerRecords reads.)
				if s.proto == engine.ProtoTCP && len(v) == binary.Size(o) {
					if _, err := binary.Decode(v, binary.NativeEndian, &o); err == nil {
						records[s.cookie] = o
					}
				}
			}
			return socks, records, nil
		}
	}
	socks, err = diagListeners()
	return socks, nil, err
}

// diagListeners lists listening TCP and bound UDP sockets on non-loopback
// addresses with sock_diag. The TCP dump asks for listeners only: the
// kernel then walks its listening hash, not the established one (which
// is sized for the machine's memory and costs milliseconds to walk even
// empty, at every change that checks for cuts).
func diagListeners() ([]diagSock, error) {
	socks, _, err := diagListenersWith(-1)
	return socks, err
}

// diagListenersWith is diagListeners, with the value each socket has in the
// socket storage map ownersFD (when not -1), by cookie.
func diagListenersWith(ownersFD int) ([]diagSock, map[uint64][]byte, error) {
	lo, hi := ephemeralRange()
	var out []diagSock
	values := map[uint64][]byte{}
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		add := func(s diagMsg, proto engine.Proto) {
			a := s.src
			if fam == unix.AF_INET {
				a = a.Unmap()
			}
			if a.Unmap().IsLoopback() || s.sport == 0 || s.inode == 0 {
				return
			}
			out = append(out, diagSock{proto: proto, local: netip.AddrPortFrom(a, s.sport), inode: s.inode, cookie: s.cookie})
			if s.storage != nil {
				values[s.cookie] = s.storage
			}
		}
		err := sockDiag(fam, unix.IPPROTO_TCP, 1<<tcpListen, ownersFD, func(s diagMsg) {
			if s.state == tcpListen {
				add(s, engine.ProtoTCP)
			}
		})
		if err != nil {
			return nil, nil, fmt.Errorf("list TCP sockets (sock_diag): %w", err)
		}
		err = sockDiag(fam, unix.IPPROTO_UDP, 1<<udpClosed, ownersFD, func(s diagMsg) {
			if s.state == udpClosed && s.dst.IsValid() && s.dst.IsUnspecified() && (s.sport < lo || s.sport > hi) {
				add(s, engine.ProtoUDP)
			}
		})
		if err != nil {
			return nil, nil, fmt.Errorf("list UDP sockets (sock_diag): %w", err)
		}
	}
	return out, values, nil
}

// diagMsg is the part of a sock_diag answer (struct inet_diag_msg) that
// diagListeners reads.
type diagMsg struct {
	state    uint8
	sport    uint16
	src, dst netip.Addr
	cookie   uint64
	inode    uint32
	storage  []byte // the value asked for of a socket storage map, if it has one
}

// sizeofDiagMsg is struct inet_diag_msg; sizeofDiagReq struct
// inet_diag_req_v2.
const (
	sizeofDiagMsg = 72
	sizeofDiagReq = 56
)

// diagReq is an inet_diag_req_v2 dumping every socket of one family and
// protocol in the states given (a bit per state).
type diagReq struct {
	family, proto uint8
	states        uint32
}

func (r diagReq) Len() int { return sizeofDiagReq }

func (r diagReq) Serialize() []byte {
	b := make([]byte, sizeofDiagReq)
	b[0], b[1] = r.family, r.proto
	binary.NativeEndian.PutUint32(b[4:], r.states)
	return b // the socket id (ports, addresses, cookie) stays zero: any
}

// sockDiag dumps the sockets of one family and protocol in the states given
// and passes each to f, with its value in the socket storage map storageFD
// when that is not -1. An interrupted dump (the tables changed during it)
// is an error, as it may have missed sockets.
func sockDiag(family, proto uint8, states uint32, storageFD int, f func(diagMsg)) error {
	req := nl.NewNetlinkRequest(nl.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP)
	req.AddData(diagReq{family: family, proto: proto, states: states})
	if storageFD >= 0 {
		stg := nl.NewRtAttr(inetDiagReqSkBPFStorages|unix.NLA_F_NESTED, nil)
		stg.AddRtAttr(skDiagBPFStorageReqMapFD, nl.Uint32Attr(uint32(storageFD)))
		req.AddData(stg)
	}
	return req.ExecuteIter(unix.NETLINK_INET_DIAG, nl.SOCK_DIAG_BY_FAMILY, func(msg []byte) bool {
		if len(msg) < sizeofDiagMsg {
			return true
		}
		m := diagMsg{state: msg[1], sport: binary.BigEndian.Uint16(msg[4:]),
			cookie: uint64(binary.NativeEndian.Uint32(msg[44:])) | uint64(binary.NativeEndian.Uint32(msg[48:]))<<32,
			inode:  binary.NativeEndian.Uint32(msg[68:])}
		if msg[0] == unix.AF_INET6 {
			m.src, m.dst = netip.AddrFrom16([16]byte(msg[8:24])), netip.AddrFrom16([16]byte(msg[24:40]))
		} else {
			m.src, m.dst = netip.AddrFrom4([4]byte(msg[8:12])), netip.AddrFrom4([4]byte(msg[24:28]))
		}
		if storageFD >= 0 {
			// (A copy: the value outlives the dump, and msg is the
			// library's buffer.)
			m.storage = bytes.Clone(diagStorage(msg[sizeofDiagMsg:]))
		}
		f(m)
		return true
	})
}

// The sock_diag attributes of socket storage (linux/inet_diag.h,
// linux/sock_diag.h).
const (
	inetDiagReqSkBPFStorages = 2  // INET_DIAG_REQ_SK_BPF_STORAGES
	skDiagBPFStorageReqMapFD = 1  // SK_DIAG_BPF_STORAGE_REQ_MAP_FD
	inetDiagSkBPFStorages    = 20 // INET_DIAG_SK_BPF_STORAGES
	skDiagBPFStorage         = 1  // SK_DIAG_BPF_STORAGE
	skDiagBPFStorageMapValue = 3  // SK_DIAG_BPF_STORAGE_MAP_VALUE
)

// diagStorage finds, in the attributes of a sock_diag answer, the value of
// the one storage map asked for (nil when the socket has none).
func diagStorage(attrs []byte) []byte {
	for _, a := range nestedAttrs(attrs, inetDiagSkBPFStorages) {
		for _, st := range nestedAttrs(a, skDiagBPFStorage) {
			if v := nestedAttrs(st, skDiagBPFStorageMapValue); len(v) > 0 {
				return v[0]
			}
		}
	}
	return nil
}

// nestedAttrs is the values of the netlink attributes of type typ in b
// (whatever their nested flag).
func nestedAttrs(b []byte, typ uint16) [][]byte {
	attrs, _ := nl.ParseRouteAttr(b) // (a malformed list: none)
	var out [][]byte
	for _, a := range attrs {
		if a.Attr.Type&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER) == typ {
			out = append(out, a.Value)
		}
	}
	return out
}

// ephemeralRange is net.ipv4.ip_local_port_range (Linux's default when it
// cannot be read).
func ephemeralRange() (lo, hi uint16) {
	lo, hi = 32768, 60999
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		return lo, hi
	}
	a, err1 := strconv.ParseUint(f[0], 10, 16)
	b, err2 := strconv.ParseUint(f[1], 10, 16)
	if err1 != nil || err2 != nil {
		return lo, hi
	}
	return uint16(a), uint16(b)
}

// socketOwners maps each socket inode wanted to the lowest pid holding it.
func socketOwners(want map[uint32]bool, pids []int) (map[uint32]int, error) {
	if pids == nil {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if pid, err := strconv.Atoi(e.Name()); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	out := map[uint32]int{}
	for _, pid := range pids {
		dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue // gone, or a kernel thread
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err != nil {
				continue
			}
			s, ok := strings.CutPrefix(target, "socket:[")
			if !ok {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 32)
			if err != nil || !want[uint32(ino)] {
				continue
			}
			if cur, ok := out[uint32(ino)]; !ok || pid < cur {
				out[uint32(ino)] = pid
			}
		}
	}
	return out, nil
}

// attachedPIDs lists the processes under the attach cgroup, where a
// listener the policy governs can only be: reading their fds alone is far
// cheaper than every process's when the attach point is a small subtree.
// nil means every process (the root, or the tree could not be read).
func (b *Backend) attachedPIDs() []int {
	if b.cgroupPath == "" || filepath.Clean(b.cgroupPath) == filepath.Clean(b.cgroupRoot) {
		return nil
	}
	pids := []int{}
	err := filepath.WalkDir(b.cgroupPath, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	if err != nil {
		return nil
	}
	return pids
}

type procInfo struct {
	subject   engine.Subject
	comm, exe string
	err       error
}

// readProc reads what the evaluator needs of a process: its executable's
// identity, cgroup, uid and gid.
func (b *Backend) readProc(pid int) *procInfo {
	pi := &procInfo{}
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
	pi.comm = strings.TrimSpace(string(comm))
	pi.exe, _ = os.Readlink(filepath.Join(dir, "exe"))
	cg, err := os.ReadFile(filepath.Join(dir, "cgroup"))
	if err != nil {
		pi.err = err
		return pi
	}
	for _, line := range strings.Split(string(cg), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			pi.subject.Cgroup = engine.CleanCgroup(p)
		}
	}
	if pi.subject.Cgroup == "" {
		pi.err = fmt.Errorf("pid %d: no cgroup v2 path", pid)
		return pi
	}
	f, err := os.Open(filepath.Join(dir, "status"))
	if err != nil {
		pi.err = err
		return pi
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.ParseUint(fields[0], 10, 32)
		switch k {
		case "Uid":
			pi.subject.UID = uint32(n)
		case "Gid":
			pi.subject.GID = uint32(n)
		}
	}
	f.Close()
	ids := map[string]engine.FileID{}
	exe := filepath.Join(dir, "exe")
	if err := b.resolver.identifyBatch([]string{exe}, ids); err == nil {
		pi.subject.Exe, pi.subject.HasExe = ids[exe]
	}
	return pi
}

// listenerRecords are the creator records the kernel keeps on TCP
// listeners, by socket cookie (none when the iterators are refused).
func (b *Backend) listenerRecords() map[uint64]datapathSockOwner {
	out := map[uint64]datapathSockOwner{}
	b.mu.Lock()
	iters := b.sockIter
	b.mu.Unlock()
	if len(iters) == 0 {
		return out
	}
	recs, err := readSockRecs(iters[0].Open)
	if err != nil {
		return out
	}
	for _, r := range recs {
		if r.listening && r.HasOwner == 1 {
			out[r.Cookie] = r.Owner
		}
	}
	return out
}

// ownerSubject is the subject of a creator record; the cgroup path comes
// from the record's cgroup id (the process's path when it cannot be found).
func (b *Backend) ownerSubject(o datapathSockOwner, proc engine.Subject, cache map[uint64]string) engine.Subject {
	s := engine.Subject{UID: o.Uid, GID: o.Gid, HasExe: o.HasExe == 1, Cgroup: proc.Cgroup,
		Exe: engine.FileID{Dev: o.Exe.Dev, Gen: o.Exe.Igen, Ino: o.Exe.Ino}}
	p, ok := cache[o.Cgroup]
	if !ok {
		p = b.cgroupPathOf(o.Cgroup)
		cache[o.Cgroup] = p
	}
	if p != "" {
		s.Cgroup = p
	}
	return s
}
