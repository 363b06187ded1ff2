package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/exewall/exewall/engine"
)

// violationLog appends violations as JSON lines to a file and rotates it
// when it grows past maxSize, keeping keep old files (path.1 the newest):
// a storm of denied connects costs bounded disk. Lines are buffered and
// flushed every second (or every 64 KiB), so the reader never waits on the
// disk per event.
//
// A full disk (or any write error) never blocks or stops the daemon: the
// lines that cannot be written are dropped and counted (lost), a partial
// line is cut off so the file stays valid JSON lines, and writing resumes
// by itself once the disk has room again.
type violationLog struct {
	path    string
	maxSize int64
	keep    int
	log     *slog.Logger

	mu      sync.Mutex
	f       *os.File // nil: not open (reopened on the next flush)
	buf     bytes.Buffer
	pending uint64 // lines in buf
	size    int64  // bytes in the file, all complete lines
	lost    uint64 // lines dropped because they could not be written
	err     error  // the write error while it lasts; nil once writing works
	closed  bool
	// The first line of every (program, rule): written again at the top of
	// each new file, so rotation never loses it however hard one program
	// floods (a flood is folded upstream, engine/fold.go).
	firsts     map[[2]string]bool
	firstLines bytes.Buffer
}

const maxFirstLines = 4096

const violationLogBuffer = 64 << 10

// openViolationLog opens the log; set its log field to hear about write
// errors and recovery.
func openViolationLog(path string, maxSize int64, keep int) (*violationLog, error) {
	l := &violationLog{path: path, maxSize: maxSize, keep: keep, log: slog.New(slog.DiscardHandler)}
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
		return fmt.Errorf("open violations log: %w", err)
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// write queues v; it never blocks on a failing disk. It returns the
// error that started a run of failures (later ones are only counted).
func (l *violationLog) write(v engine.Violation) error {
	line, err := json.Marshal(v)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	if err != nil {
		l.lost++
		return err
	}
	if v.Folded == 0 {
		if k := [2]string{firstProg(v), v.Rule}; !l.firsts[k] && len(l.firsts) < maxFirstLines {
			if l.firsts == nil {
				l.firsts = map[[2]string]bool{}
			}
			l.firsts[k] = true
			l.firstLines.Write(line)
			l.firstLines.WriteByte('\n')
		}
	}
	l.buf.Write(line)
	l.buf.WriteByte('\n')
	l.pending++
	if l.buf.Len() >= violationLogBuffer || l.size+int64(l.buf.Len()) >= l.maxSize {
		return l.flushLocked()
	}
	return nil
}

// flushLocked writes the buffered lines, rotating first when the file
// would outgrow maxSize. On failure the lines are counted as lost, and the
// error is returned when it starts a run of failures.
func (l *violationLog) flushLocked() error {
	if l.pending == 0 {
		return nil
	}
	n := l.pending
	data := l.buf.Bytes()
	defer func() { l.buf.Reset(); l.pending = 0 }()
	if l.f != nil && l.size > 0 && l.size+int64(len(data)) > l.maxSize {
		l.rotate()
	}
	if l.f == nil {
		if err := l.open(); err != nil {
			return l.failed(err, n)
		}
	}
	w, err := l.f.Write(data)
	if err != nil {
		if w > 0 {
			// Cut off the partial line (this also frees what it took).
			l.f.Truncate(l.size)
		}
		return l.failed(err, n)
	}
	l.size += int64(w)
	if l.err != nil {
		l.log.Warn("violations log writable again", "path", l.path, "lost", l.lost)
		l.err = nil
	}
	return nil
}

func (l *violationLog) failed(err error, lines uint64) error {
	l.lost += lines
	first := l.err == nil
	l.err = err
	if first {
		return fmt.Errorf("%w; violations are dropped from the log (and counted) until it can be written again", err)
	}
	return nil
}

func (l *violationLog) rotate() {
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
	if err := l.open(); err != nil {
		l.f = nil
		return
	}
	if int64(l.firstLines.Len()) > l.maxSize/2 {
		return // a log too small for them: the window still pins them
	}
	if w, err := l.f.Write(l.firstLines.Bytes()); err == nil {
		l.size += int64(w)
	} else if w > 0 {
		l.f.Truncate(l.size)
	}
}

func firstProg(v engine.Violation) string {
	if v.Exe != "" {
		return v.Exe
	}
	return "comm:" + v.Comm
}

// stats returns how many lines were lost and the current write error.
func (l *violationLog) stats() (lost uint64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost, l.err
}

func (l *violationLog) flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flushLocked()
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
			if err := l.flush(); err != nil {
				l.log.Error("write violations log", "path", l.path, "err", err)
			}
		}
	}
}

func (l *violationLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
	l.closed = true
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
