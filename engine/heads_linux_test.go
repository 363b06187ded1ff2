package engine

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestEachHeadReadsAsReadHead: the heads read through rings are those
// readHead reads, file by file, for files in the page cache and out of it,
// missing ones, empty ones, and a FIFO whose writer never writes (which
// neither may wait on).
func TestEachHeadReadsAsReadHead(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for i := range 3*ringBatch + 7 { // (enough for rings, and a short batch)
		p := filepath.Join(dir, fmt.Sprintf("f%03d", i))
		files = append(files, p)
		switch i % 50 {
		case 7:
			continue // missing
		case 8:
			if err := unix.Mkfifo(p, 0o755); err != nil {
				t.Fatal(err)
			}
			w, err := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0) // the silent writer
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(w)
			continue
		case 9:
			writeFile(t, p, "")
			continue
		}
		body := fmt.Sprintf("#!/bin/sh\n# file %d %0300d", i, i)
		if i%2 == 0 {
			body = fmt.Sprintf("\x7fELF %d", i)
		}
		writeFile(t, p, body)
	}
	// Out of the page cache (written back first: only clean pages go), on a
	// file system that has one.
	for _, p := range files[:ringBatch] {
		if fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
			unix.Fsync(fd)
			unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
			unix.Close(fd)
		}
	}
	type head struct {
		data string
		err  string
	}
	read := func(each func([]string, func(int, []byte, error))) []head {
		out := make([]head, len(files))
		calls := make([]int, len(files))
		var mu sync.Mutex
		done := make(chan struct{})
		go func() {
			defer close(done)
			each(files, func(k int, h []byte, err error) {
				mu.Lock()
				defer mu.Unlock()
				out[k], calls[k] = head{data: string(h), err: fmt.Sprint(err)}, calls[k]+1
			})
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("reading the heads does not end (waiting on the FIFO?)")
		}
		for k, n := range calls {
			if n != 1 {
				t.Errorf("%s: %d calls", files[k], n)
			}
		}
		return out
	}
	got, want := read(eachHead), read(eachHeadReading)
	for k := range files {
		if got[k] != want[k] {
			t.Errorf("%s: eachHead read %q (%s), readHead %q (%s)", files[k], got[k].data, got[k].err, want[k].data, want[k].err)
		}
	}
	if w := want[1]; len(w.data) != binprmBufSize || w.err != "<nil>" {
		t.Errorf("a script's head: %d bytes (%s), want %d", len(w.data), w.err, binprmBufSize)
	}
	if w := want[8]; w.err == "<nil>" {
		t.Errorf("the FIFO's head read without an error: %q", w.data)
	}
}
