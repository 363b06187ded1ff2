package daemon

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/exewall/exewall/engine"
)

// violationLog appends violations as JSON lines to a file and rotates it
// when it grows past maxSize, keeping keep old files (path.1 the newest):
// a storm of denied connects costs bounded disk. Writes are buffered and
// flushed every second, so the reader never waits on the disk per event.
type violationLog struct {
	path    string
	maxSize int64
	keep    int

	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	size int64
	enc  *json.Encoder
	err  error // last write error, logged once
}

func openViolationLog(path string, maxSize int64, keep int) (*violationLog, error) {
	l := &violationLog{path: path, maxSize: maxSize, keep: keep}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *violationLog) open() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open violations log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, fi.Size()
	l.w = bufio.NewWriterSize(f, 64<<10)
	l.enc = json.NewEncoder(countingWriter{l})
	return nil
}

type countingWriter struct{ l *violationLog }

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.l.w.Write(p)
	c.l.size += int64(n)
	return n, err
}

// write appends v; it reports the first error of a run of failures.
func (l *violationLog) write(v engine.Violation) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	if l.size >= l.maxSize {
		if err := l.rotate(); err != nil {
			return l.fail(err)
		}
	}
	return l.fail(l.enc.Encode(v))
}

func (l *violationLog) fail(err error) error {
	first := err != nil && l.err == nil
	l.err = err
	if first {
		return err
	}
	return nil
}

func (l *violationLog) rotate() error {
	l.w.Flush()
	l.f.Close()
	l.f = nil
	for i := l.keep; i >= 1; i-- {
		from := l.path
		if i > 1 {
			from = fmt.Sprintf("%s.%d", l.path, i-1)
		}
		os.Rename(from, fmt.Sprintf("%s.%d", l.path, i))
	}
	if l.keep == 0 {
		os.Remove(l.path)
	}
	return l.open()
}

func (l *violationLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w != nil {
		l.w.Flush()
	}
}

// flushEvery flushes until done is closed.
func (l *violationLog) flushEvery(d time.Duration, done <-chan struct{}) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			l.flush()
		}
	}
}

func (l *violationLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	l.w.Flush()
	err := l.f.Close()
	l.f = nil
	return err
}
