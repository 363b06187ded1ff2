package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

// TestViolationLogDiskFull writes the log to /dev/full (every write fails
// with ENOSPC): nothing blocks, every line is counted as lost, the error
// is reported once, then kept for status until writing works again.
func TestViolationLogDiskFull(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/dev/full is Linux's")
	}
	path := filepath.Join(t.TempDir(), "violations.log")
	if err := os.Symlink("/dev/full", path); err != nil {
		t.Fatal(err)
	}
	l, err := openViolationLog(path, 10<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	const n = 5000 // several 64 KiB flushes
	reported := 0
	for i := range n {
		if err := l.write(engine.Violation{Time: time.Now(), PID: uint32(i), Comm: "x", Verdict: engine.VerdictDeny}); err != nil {
			reported++
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("write error %v, want ENOSPC", err)
			}
		}
	}
	if err := l.flush(); err != nil {
		t.Fatalf("a second report of the same failure: %v", err)
	}
	lost, err := l.stats()
	if lost != n || !errors.Is(err, syscall.ENOSPC) || reported != 1 {
		t.Fatalf("lost %d of %d, error %v, reported %d times", lost, n, err, reported)
	}
}

// TestViolationLogKeepsFirstEvents is issue 13 item 9: however many lines a
// flood writes (the log rotates many times over), the current file still
// holds the first event of every (program, rule).
func TestViolationLogKeepsFirstEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "violations.log")
	l, err := openViolationLog(path, 256<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	l.write(engine.Violation{Time: time.Now(), Exe: "/usr/bin/quiet", Rule: "q", Verdict: engine.VerdictDeny})
	l.write(engine.Violation{Time: time.Now(), Comm: "nameless", Rule: "n", Verdict: engine.VerdictDeny})
	for i := range 50000 {
		l.write(engine.Violation{Time: time.Now(), PID: uint32(i), Exe: "/tmp/flooder", Rule: "f", Verdict: engine.VerdictDeny})
	}
	l.flush()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"exe":"/usr/bin/quiet"`, `"comm":"nameless"`, `"pid":0,`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("after rotation the log lost the first event with %s", want)
		}
	}
}
