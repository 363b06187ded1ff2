//go:build linux

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

// procStatus reads a kB field (VmRSS, VmHWM) of a process we started.
func procStatus(t *testing.T, pid int, field string) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			var kb int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestDenyStormMemory makes 100,000 denied connects and checks that the
// daemon's memory stays bounded and its API keeps answering meanwhile.
func TestDenyStormMemory(t *testing.T) {
	const connects = 100000
	w := newWorld(t)
	blocked := clientCopy(t, t.TempDir(), "storm")
	port := listen(t)
	w.start()
	w.ok("deny", "--name", "storm", blocked)
	pid := w.d.Process.Pid
	time.Sleep(200 * time.Millisecond)
	before := procStatus(t, pid, "VmRSS")

	done := make(chan string)
	go func() {
		_, out := w.connect(blocked, "tcp4", port, connects)
		done <- out
	}()
	// The API answers during the storm.
	slowest := time.Duration(0)
	var out string
	for running := true; running; {
		select {
		case out = <-done:
			running = false
		default:
			start := time.Now()
			w.ok("status", "--json")
			if d := time.Since(start); d > slowest {
				slowest = d
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if out != fmt.Sprintf("map[EPERM:%d]", connects) {
		t.Fatalf("client: %s", out)
	}
	time.Sleep(2 * time.Second) // let the reader drain the ring buffer
	var st engine.Status
	if err := json.Unmarshal([]byte(w.ok("status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	after, peak := procStatus(t, pid, "VmRSS"), procStatus(t, pid, "VmHWM")
	// An event stands for its count of repeated attempts (the kernel folds
	// repeats of one attempt within a second into one event).
	var kept int
	var attempts uint64
	count := func() bool {
		vs := w.violations()
		kept, attempts = len(vs), 0
		for _, v := range vs {
			n, _ := v["count"].(float64)
			attempts += uint64(max(n, 1))
		}
		return attempts >= connects
	}
	// The tail of a burst is reported a moment after it ends.
	for deadline := time.Now().Add(15 * time.Second); !count() && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
	}
	if err := json.Unmarshal([]byte(w.ok("status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d denied connects: kernel counted %d denied, daemon received %d events (%d lost) standing for %d attempts, kept %d in memory; "+
		"daemon RSS %d kB before, %d kB after, peak %d kB; slowest status call %v",
		connects, st.RuleCounter["storm"].Denied, st.Violations, st.EventsLost, attempts, kept, before, after, peak, slowest.Round(time.Millisecond))
	if st.RuleCounter["storm"].Denied < connects {
		t.Errorf("kernel counted %d denied, want >= %d", st.RuleCounter["storm"].Denied, connects)
	}
	if st.EventsLost == 0 && uint64(st.Violations) == uint64(kept) && attempts != connects {
		t.Errorf("no event lost, yet the events stand for %d attempts, want %d", attempts, connects)
	}
	if st.EventsLost == 0 && st.Violations == 0 {
		t.Errorf("no event received for %d denied connects", connects)
	}
	if kept > 10000 {
		t.Errorf("daemon keeps %d violations in memory, bound is 10000", kept)
	}
	if peak > 128*1024 {
		t.Errorf("daemon peak RSS %d kB, want < 128 MiB", peak)
	}
	if slowest > 2*time.Second {
		t.Errorf("status took %v during the storm", slowest)
	}
}
