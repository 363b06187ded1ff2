//go:build linux

package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestViolationsTableIsInert is issue 13 item 10: a program whose name (the
// kernel's comm, taken from the file name) holds a terminal escape sequence
// and a newline gets denied; `exewall violations` prints its row with those
// bytes quoted, so it can neither erase the screen nor forge a line.
func TestViolationsTableIsInert(t *testing.T) {
	w := newWorld(t)
	evil := clientCopy(t, t.TempDir(), "ev\x1b[2J\nFORGED")
	port := listen(t)
	w.start()
	w.ok("default", "deny")
	w.wantVerdict(evil, port, "EPERM")
	var out string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		out = w.ok("violations", "--since", "1m")
		if strings.Contains(out, `ev\x1b[2J\nFORGED`) {
			break
		}
	}
	if strings.ContainsAny(out, "\x1b\r") {
		t.Errorf("the violations table carries raw control characters:\n%q", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "FORGED") {
			t.Errorf("a process name forged a line of the table:\n%s", out)
		}
	}
	if !strings.Contains(out, `ev\x1b[2J\nFORG`) {
		t.Errorf("the denied program's row does not show its quoted name:\n%s", out)
	}
}
