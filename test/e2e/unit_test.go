//go:build linux

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestSystemdUnit checks deploy/systemd/exewall.service with
// systemd-analyze verify (our CI machines do not run systemd as PID 1, so
// the unit is verified, not started; READY=1 is checked by every daemon
// start in these tests).
func TestSystemdUnit(t *testing.T) {
	lookPath(t, "systemd-analyze")
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "..", "..", "deploy", "systemd", "exewall.service")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "Before=network-pre.target", "ExecStart=/usr/local/bin/exewall daemon"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	// Verify a copy that runs the binary under test: verify checks that
	// ExecStart's program exists.
	unit := filepath.Join(t.TempDir(), "exewall.service")
	os.WriteFile(unit, []byte(strings.ReplaceAll(string(data), "/usr/local/bin/exewall", exewall)), 0o644)
	out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
