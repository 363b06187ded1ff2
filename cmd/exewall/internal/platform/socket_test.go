package platform

import (
	"runtime"
	"testing"
)

// The CLI and the service definitions (systemd unit, LaunchDaemon plist,
// Windows service) must agree on where the daemon listens.
func TestDefaultSocket(t *testing.T) {
	want, ok := map[string]string{
		"linux":   "/run/exewall/exewall.sock",
		"darwin":  "/var/run/exewall/exewall.sock",
		"windows": `\\.\pipe\exewall`,
	}[runtime.GOOS]
	if !ok {
		t.Skip("no contract for", runtime.GOOS)
	}
	if DefaultSocket != want {
		t.Errorf("DefaultSocket = %q, want %q", DefaultSocket, want)
	}
}
