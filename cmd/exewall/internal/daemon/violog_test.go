package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
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
