//go:build linux

package kerneltest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Skipf skips the test, or fails it under CI=true, where a silent skip
// would hide a broken setup.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run under CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// Require skips (fails under CI) a test that needs root and cgroup v2 to
// load and attach eBPF programs when this machine cannot give it them.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skipf(t, "kernel tests need root (run `sudo make test`)")
	}
	if _, err := CgroupMount(); err != nil {
		Skipf(t, "%v", err)
	}
}

// RequireTool skips (fails under CI) when a program the test runs is missing.
func RequireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		Skipf(t, "%s is needed: %v", name, err)
	}
}

// Name returns prefix followed by random hex: names of scratch cgroups, pin
// dirs and interfaces that no other test (or engineer) picks.
func Name(prefix string) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("random name: %v", err))
	}
	return prefix + hex.EncodeToString(b)
}
