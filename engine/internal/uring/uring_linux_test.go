package uring

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func newRing(t *testing.T) *Ring {
	t.Helper()
	r, err := New(8)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		t.Skipf("io_uring unavailable here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestReadNoWaitReadsCachedFiles(t *testing.T) {
	r := newRing(t)
	dir := t.TempDir()
	var fds []int
	var bufs [][]byte
	for i, body := range []string{"first file", "second, longer file", ""} {
		p := filepath.Join(dir, string(rune('a'+i)))
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		fds = append(fds, fd)
		bufs = append(bufs, make([]byte, 8))
	}
	res := make([]int32, len(fds))
	if err := r.ReadNoWait(fds, bufs, res); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"first fi", "second, ", ""} {
		if res[i] != int32(len(want)) || string(bufs[i][:res[i]]) != want {
			t.Errorf("read %d: %d %q, want %q", i, res[i], bufs[i][:max(res[i], 0)], want)
		}
	}
}

// A FIFO whose writer never writes: a read that waited would never end.
func TestReadNoWaitDoesNotWaitOnAFIFO(t *testing.T) {
	r := newRing(t)
	p := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0) // the silent writer
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(w)
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	res := make([]int32, 1)
	done := make(chan error, 1)
	go func() { done <- r.ReadNoWait([]int{fd}, [][]byte{make([]byte, 8)}, res) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		if res[0] >= 0 {
			t.Errorf("read of an empty FIFO returned %d bytes", res[0])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the read waits on a FIFO with a silent writer")
	}
}

func TestReadNoWaitRefusesMoreThanTheRing(t *testing.T) {
	r := newRing(t)
	n := r.Size() + 1
	if err := r.ReadNoWait(make([]int, n), make([][]byte, n), make([]int32, n)); err == nil {
		t.Error("a batch larger than the ring was taken")
	}
}
