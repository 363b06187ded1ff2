package engine

import (
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine/internal/uring"
)

// eachHead calls f with the start of each of files (up to binprmBufSize
// bytes, valid during the call) or why it could not be read, from several
// goroutines at once.
//
// Many files are read through io_uring, ringBatch per system call: the
// disk reads of cold files stored side by side then merge (package uring
// has the figures). Each read is asked not to wait; one that would is read
// again from the same fd, by then waiting for the read the ring started.
// Without io_uring, the files are read one by one (eachHeadReading).
func eachHead(files []string, f func(k int, head []byte, err error)) {
	if len(files) < ringAtLeast {
		eachHeadReading(files, f)
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(max(runtime.NumCPU(), 2), 8, len(files)/ringBatch+1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _ := uring.New(ringBatch) // nil where io_uring is disabled or filtered: plain reads
			h := headBatch{ring: r}
			for {
				lo := int(next.Add(ringBatch) - ringBatch)
				if lo >= len(files) {
					break
				}
				h.read(files, lo, min(lo+ringBatch, len(files)), f)
			}
			if h.ring != nil {
				h.ring.Close()
			}
		}()
	}
	wg.Wait()
}

// ringBatch is how many heads one ring reads per system call, and
// ringAtLeast how many files make a ring worth its setup.
const (
	ringBatch   = 128
	ringAtLeast = 256
)

// headBatch is what one goroutine of eachHead reads with.
type headBatch struct {
	ring *uring.Ring // nil: plain reads
	bufs [ringBatch][binprmBufSize]byte
	fds  []int
	pos  []int    // the position in files of each fd
	into [][]byte // the buffer of each fd
	res  [ringBatch]int32
}

// read reads the heads of files[lo:hi] and calls f with each.
func (h *headBatch) read(files []string, lo, hi int, f func(k int, head []byte, err error)) {
	h.fds, h.pos, h.into = h.fds[:0], h.pos[:0], h.into[:0]
	for k := lo; k < hi; k++ {
		fd, err := openHead(files[k])
		if err != nil {
			f(k, nil, err)
			continue
		}
		h.fds = append(h.fds, fd)
		h.pos = append(h.pos, k)
		h.into = append(h.into, h.bufs[len(h.into)][:])
	}
	res := h.res[:len(h.fds)]
	for i := range res {
		res[i] = -int32(unix.EAGAIN)
	}
	// A failed call leaves no read running (a read that does not wait is
	// done when submitted): the buffers are the plain reads' again.
	if h.ring != nil && h.ring.ReadNoWait(h.fds, h.into, res) != nil {
		h.ring.Close()
		h.ring = nil
	}
	for i, fd := range h.fds {
		n, err := int(res[i]), error(nil)
		if n < 0 {
			// Not in the page cache when asked (its read is under way),
			// or a kind of file the ring would not read without waiting:
			// read as readHead does.
			n, err = readHeadFD(fd, files[h.pos[i]], h.into[i])
		}
		unix.Close(fd)
		f(h.pos[i], h.into[i][:n], err)
	}
}
