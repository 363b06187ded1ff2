package uring

import (
	"errors"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel ABI (include/uapi/linux/io_uring.h).
const (
	enterGetEvents = 1 << 0
	opRead         = 22
	offSQRing      = 0
	offCQRing      = 0x8000000
	offSQEs        = 0x10000000
	sqeSize        = 64
	cqeSize        = 16
)

type sqOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type cqOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, CQEs, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type params struct {
	SQEntries, CQEntries, Flags, SQThreadCPU, SQThreadIdle, Features, WQFd uint32
	Resv                                                                   [3]uint32
	SQOff                                                                  sqOffsets
	CQOff                                                                  cqOffsets
}

type sqe struct {
	Opcode, Flags uint8
	IOPrio        uint16
	Fd            int32
	Off           uint64
	Addr          uint64
	Len           uint32
	RWFlags       uint32
	UserData      uint64
	_             [24]byte
}

type cqe struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// Ring is an io_uring instance for one goroutine at a time. After an
// error, it is only to be closed.
type Ring struct {
	fd           int
	sq, cq, sqes []byte
	p            params
}

// New sets up a ring of entries submissions (a power of two). Where the
// kernel has no io_uring, or refuses it (kernel.io_uring_disabled, a
// seccomp filter), the error says so and the caller reads another way.
func New(entries uint32) (*Ring, error) {
	r := &Ring{}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&r.p)), 0)
	if errno != 0 {
		return nil, errno
	}
	r.fd = int(fd)
	var err error
	if r.sq, err = mmap(r.fd, offSQRing, r.p.SQOff.Array+r.p.SQEntries*4); err == nil {
		if r.cq, err = mmap(r.fd, offCQRing, r.p.CQOff.CQEs+r.p.CQEntries*cqeSize); err == nil {
			r.sqes, err = mmap(r.fd, offSQEs, r.p.SQEntries*sqeSize)
		}
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func mmap(fd int, off int64, size uint32) ([]byte, error) {
	return unix.Mmap(fd, off, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
}

// Size is how many reads one call of ReadNoWait takes at most.
func (r *Ring) Size() int { return int(r.p.SQEntries) }

// ReadNoWait reads the start of each file open as fds[i] into bufs[i], all
// in one system call that waits for no disk: res[i] is the count read, or
// -EAGAIN when the data was not in the page cache (the kernel has then
// started reading it: a read of the fd a little later waits for that
// read, not for one of its own), or another negative errno. It never
// blocks on a file, not even a FIFO with a silent writer, which a plain
// io_uring read would wait on forever.
func (r *Ring) ReadNoWait(fds []int, bufs [][]byte, res []int32) error {
	n := len(fds)
	if n == 0 {
		return nil
	}
	if n > r.Size() || len(bufs) != n || len(res) != n {
		return errors.New("uring: batch larger than the ring or lengths differ")
	}
	tail := atomic.LoadUint32(r.u32(r.sq, r.p.SQOff.Tail))
	mask := *r.u32(r.sq, r.p.SQOff.RingMask)
	for i, fd := range fds {
		idx := tail & mask
		*(*sqe)(unsafe.Pointer(&r.sqes[idx*sqeSize])) = sqe{
			Opcode: opRead, Fd: int32(fd), Addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(bufs[i])))),
			Len: uint32(len(bufs[i])), RWFlags: unix.RWF_NOWAIT, UserData: uint64(i),
		}
		*r.u32(r.sq, r.p.SQOff.Array+idx*4) = idx
		tail++
	}
	atomic.StoreUint32(r.u32(r.sq, r.p.SQOff.Tail), tail)
	defer runtime.KeepAlive(bufs)
	submitted := 0
	for submitted < n {
		// (RWF_NOWAIT reads complete while they are submitted: waiting for
		// n completions returns at once.)
		k, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(n-submitted), uintptr(n-submitted), enterGetEvents, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		submitted += int(k)
	}
	cqMask := *r.u32(r.cq, r.p.CQOff.RingMask)
	for got := 0; got < n; {
		head := atomic.LoadUint32(r.u32(r.cq, r.p.CQOff.Head))
		if head == atomic.LoadUint32(r.u32(r.cq, r.p.CQOff.Tail)) {
			if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 0, 1, enterGetEvents, 0, 0); errno != 0 && errno != unix.EINTR {
				return errno
			}
			continue
		}
		c := *(*cqe)(unsafe.Pointer(&r.cq[r.p.CQOff.CQEs+(head&cqMask)*cqeSize]))
		if c.UserData < uint64(n) {
			res[c.UserData] = c.Res
		}
		atomic.StoreUint32(r.u32(r.cq, r.p.CQOff.Head), head+1)
		got++
	}
	return nil
}

func (r *Ring) u32(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }

// Close releases the ring.
func (r *Ring) Close() error {
	for _, m := range [][]byte{r.sq, r.cq, r.sqes} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	return unix.Close(r.fd)
}
