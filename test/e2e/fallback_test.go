//go:build linux

package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/exewall/exewall/engine"
)

// TestDisabledHooksInStatusAndDoctor runs the daemon as on a kernel without
// the exec hook and bpf_sock_destroy (EXEWALL_TEST_DISABLE): it must still
// enforce, and status and doctor must say which hooks are off.
func TestDisabledHooksInStatusAndDoctor(t *testing.T) {
	t.Setenv("EXEWALL_TEST_DISABLE", "exec,sock_destroy")
	w := newWorld(t)
	blocked := clientCopy(t, t.TempDir(), "blocked")
	port := listen(t)
	w.start()
	w.ok("deny", "--name", "blocked", blocked)
	if _, got := w.connect(blocked, "tcp4", port, 1); got != "EPERM" {
		t.Fatalf("denied program without the optional hooks: %s, want EPERM", got)
	}
	var st engine.Status
	if err := json.Unmarshal([]byte(w.ok("status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(st.Hooks, "exec") || slices.Contains(st.Hooks, "sock_destroy") || !slices.Contains(st.Hooks, "connect4") {
		t.Errorf("status hooks %v: want connect4, neither exec nor sock_destroy", st.Hooks)
	}
	doctor := w.cli("doctor").stdout
	for _, hook := range []string{"exec", "sock_destroy"} {
		if !strings.Contains(doctor, "EXEWALL_TEST_DISABLE") || !containsLine(doctor, "hook "+hook, "disabled by EXEWALL_TEST_DISABLE") {
			t.Errorf("doctor does not say %s is off:\n%s", hook, doctor)
		}
	}
}

// containsLine reports whether one line of text contains both a and b.
func containsLine(text, a, b string) bool {
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, a) && strings.Contains(line, b) {
			return true
		}
	}
	return false
}
