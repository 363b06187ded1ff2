//go:build linux

package linux

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

// A minimal io_uring, enough for an attacker to submit one request at a
// time. Written here rather than taken from a library: a test needs the
// three ways a request runs (inline, on an io-wq worker, on the SQPOLL
// thread) and nothing else, and x/sys/unix has no io_uring.
const (
	iouSetupSQPoll  = 1 << 1
	iouEnterGetEv   = 1 << 0
	iouEnterSQWake  = 1 << 1
	iouSQNeedWakeup = 1 << 0
	iouSQEAsync     = 1 << 4
	iouOpSendmsg    = 9
	iouOpConnect    = 16
	iouOpSocket     = 45
	iouOffSQRing    = 0
	iouOffCQRing    = 0x8000000
	iouOffSQEs      = 0x10000000
)

type iouSQOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}
type iouCQOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, CQEs, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type iouParams struct {
	SQEntries, CQEntries, Flags, SQThreadCPU, SQThreadIdle, Features, WQFd uint32
	Resv                                                                   [3]uint32
	SQOff                                                                  iouSQOffsets
	CQOff                                                                  iouCQOffsets
}

type iouSQE struct {
	Opcode, Flags uint8
	IOPrio        uint16
	Fd            int32
	Off           uint64
	Addr          uint64
	Len           uint32
	OpFlags       uint32
	UserData      uint64
	_             [24]byte
}

type iouCQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

type uring struct {
	fd           int
	sq, cq, sqes []byte
	p            iouParams
	sqpoll       bool
}

func newURing(sqpoll bool) (*uring, error) {
	r := &uring{sqpoll: sqpoll}
	if sqpoll {
		r.p.Flags = iouSetupSQPoll
		r.p.SQThreadIdle = 1000
	}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&r.p)), 0)
	if errno != 0 {
		return nil, errno
	}
	r.fd = int(fd)
	var err error
	if r.sq, err = unix.Mmap(r.fd, iouOffSQRing, int(r.p.SQOff.Array+r.p.SQEntries*4), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, err
	}
	if r.cq, err = unix.Mmap(r.fd, iouOffCQRing, int(r.p.CQOff.CQEs+r.p.CQEntries*16), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, err
	}
	if r.sqes, err = unix.Mmap(r.fd, iouOffSQEs, int(r.p.SQEntries*64), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *uring) u32(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }

// do submits sqe and waits for its completion: the request's result
// (a negative errno or what the operation returns).
func (r *uring) do(sqe iouSQE) (int32, error) {
	tail := atomic.LoadUint32(r.u32(r.sq, r.p.SQOff.Tail))
	mask := *r.u32(r.sq, r.p.SQOff.RingMask)
	idx := tail & mask
	*(*iouSQE)(unsafe.Pointer(&r.sqes[idx*64])) = sqe
	*r.u32(r.sq, r.p.SQOff.Array+idx*4) = idx
	atomic.StoreUint32(r.u32(r.sq, r.p.SQOff.Tail), tail+1)
	flags := uintptr(iouEnterGetEv)
	if r.sqpoll && atomic.LoadUint32(r.u32(r.sq, r.p.SQOff.Flags))&iouSQNeedWakeup != 0 {
		flags |= iouEnterSQWake
	}
	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 1, 1, flags, 0, 0); errno != 0 {
		return 0, errno
	}
	head := atomic.LoadUint32(r.u32(r.cq, r.p.CQOff.Head))
	for head == atomic.LoadUint32(r.u32(r.cq, r.p.CQOff.Tail)) {
		// SQPOLL: the thread may not have taken the request yet.
		if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 0, 1, iouEnterGetEv, 0, 0); errno != 0 {
			return 0, errno
		}
	}
	cqmask := *r.u32(r.cq, r.p.CQOff.RingMask)
	cqe := *(*iouCQE)(unsafe.Pointer(&r.cq[r.p.CQOff.CQEs+(head&cqmask)*16]))
	atomic.StoreUint32(r.u32(r.cq, r.p.CQOff.Head), head+1)
	return cqe.Res, nil
}

func (r *uring) close() {
	unix.Munmap(r.sq)
	unix.Munmap(r.cq)
	unix.Munmap(r.sqes)
	unix.Close(r.fd)
}

// uringErr names a request's result as errName does a syscall's.
func uringErr(res int32, err error) string {
	if err != nil {
		return "enter: " + errName(err)
	}
	if res < 0 {
		return errName(unix.Errno(-res))
	}
	return ""
}

// attackURing asks io_uring, in each of the ways a request runs, to connect
// a TCP socket to dst, to send a UDP datagram to it, and to create an MPTCP
// socket: every one must be judged as the program that asked.
func attackURing(dst netip.Addr, port int, res map[string]string) {
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(uint16(port)), Addr: dst.As4()}
	for _, mode := range []string{"inline", "async", "sqpoll"} {
		r, err := newURing(mode == "sqpoll")
		if err != nil {
			res["setup-"+mode] = errName(err)
			continue
		}
		var flags uint8
		if mode == "async" {
			flags = iouSQEAsync // run by an io-wq worker thread
		}
		tcp, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		res["connect-"+mode] = uringErr(r.do(iouSQE{Opcode: iouOpConnect, Flags: flags, Fd: int32(tcp),
			Addr: uint64(uintptr(unsafe.Pointer(&sa))), Off: uint64(unsafe.Sizeof(sa))}))
		unix.Close(tcp)

		udp, _ := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		payload := []byte("exewall")
		iov := unix.Iovec{Base: &payload[0]}
		iov.SetLen(len(payload))
		msg := unix.Msghdr{Name: (*byte)(unsafe.Pointer(&sa)), Namelen: uint32(unsafe.Sizeof(sa)), Iov: &iov, Iovlen: 1}
		res["sendmsg-"+mode] = uringErr(r.do(iouSQE{Opcode: iouOpSendmsg, Flags: flags, Fd: int32(udp),
			Addr: uint64(uintptr(unsafe.Pointer(&msg))), Len: 1}))
		unix.Close(udp)
		runtime.KeepAlive(payload)

		fd, err := r.do(iouSQE{Opcode: iouOpSocket, Flags: flags, Fd: unix.AF_INET, Off: unix.SOCK_STREAM, Len: unix.IPPROTO_MPTCP})
		res["mptcp-"+mode] = uringErr(fd, err)
		if err == nil && fd >= 0 {
			unix.Close(int(fd))
		}
		runtime.KeepAlive(&sa)
		r.close()
	}
}

// TestIOUringIsJudged: what a program asks of io_uring is judged as that
// program, whichever thread runs the request: its own (inline), an io-wq
// worker (IOSQE_ASYNC) or the ring's SQPOLL thread. A denied program, as
// uid 65534 in the attach cgroup, gets EPERM for a connect, an unconnected
// send and an MPTCP socket; an allowed one gets them through (the control).
func TestIOUringIsJudged(t *testing.T) {
	requireKernel(t)
	if b, err := os.ReadFile("/proc/sys/kernel/io_uring_disabled"); err == nil && len(b) > 0 && b[0] != '0' {
		t.Skipf("io_uring is disabled here (kernel.io_uring_disabled = %s)", b[:1])
	}
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	dir := publicDir(t)
	denied, free := clientCopy(t, dir, "uring-denied"), clientCopy(t, dir, "uring-free")
	b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{denyRule("uring-denied", denied)}})
	port := listenLoopback(t)
	env := []string{"H3_SEG=127.0.0.1", "H3_DST=127.0.0.1", fmt.Sprintf("H3_PORT=%d", port)}

	control := runAttacker(t, free, cg, "", "uring", env, false, nil)
	got := runAttacker(t, denied, cg, "", "uring", env, false, nil)
	t.Logf("allowed program: %v; denied program: %v", control, got)
	checked := 0
	for _, mode := range []string{"inline", "async", "sqpoll"} {
		if e := control["setup-"+mode]; e != "" {
			t.Logf("io_uring %s unavailable to uid 65534 here (%s): not checked", mode, e)
			continue
		}
		for _, op := range []string{"connect", "sendmsg", "mptcp"} {
			k := op + "-" + mode
			if c := control[k]; c != "" && c != "ECONNREFUSED" {
				t.Logf("%s: the allowed program got %s: not checked", k, c)
				continue
			}
			checked++
			if got[k] != "EPERM" {
				t.Errorf("%s from the denied program: got %q, want EPERM", k, got[k])
			}
		}
	}
	if checked == 0 {
		t.Fatal("no io_uring request could be checked: the allowed program got none through")
	}
	v := waitViolation(t, b.Backend, func(v engine.Violation) bool { return v.Rule == "uring-denied" && v.Exe == denied })
	t.Logf("%d requests checked; event: rule %s exe %s pid %d comm %s", checked, v.Rule, v.Exe, v.PID, v.Comm)
}
