//go:build !linux

package engine_test

import (
	"os"
	"runtime"
	"testing"
)

// makeReadOnly makes dir unwritable: by its modes, which root ignores.
func makeReadOnly(t *testing.T, dir string) {
	t.Helper()
	if runtime.GOOS == "windows" || os.Geteuid() == 0 {
		t.Skip("root (and Windows) can write a read-only file")
	}
	os.Chmod(dir, 0o555)
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
}
