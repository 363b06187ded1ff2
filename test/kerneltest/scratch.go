//go:build linux

package kerneltest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// CgroupMount returns where the cgroup v2 hierarchy is mounted
// (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts).
func CgroupMount() (string, error) {
	for _, dir := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return dir, nil
		}
	}
	return "", errors.New("no cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified")
}

// Cgroup creates a scratch cgroup and removes it, with any process the test
// left in it, when the test ends.
func Cgroup(t testing.TB) string {
	t.Helper()
	root, err := CgroupMount()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, Name("exewall-test-"))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create scratch cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := RemoveCgroup(dir); err != nil {
			t.Errorf("scratch cgroup %s: %v", dir, err)
		}
	})
	return dir
}

// RemoveCgroup kills what runs in a scratch cgroup (only the test's own
// clients can) and removes it with its children.
func RemoveCgroup(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			RemoveCgroup(filepath.Join(dir, e.Name()))
		}
	}
	var err error
	for range 200 {
		if err = os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		data, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, f := range strings.Fields(string(data)) {
			if pid, _ := strconv.Atoi(f); pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("could not be removed: %w", err)
}

// PinDir names a scratch pin dir under /sys/fs/bpf (not created). When the
// test ends reset removes what is pinned there (pass the backend's Reset)
// and the test fails if anything is left.
func PinDir(t testing.TB, reset func(dir string) error) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/bpf", Name("exewall-test-"))
	t.Cleanup(func() {
		if err := reset(dir); err != nil {
			t.Errorf("reset %s: %v", dir, err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pin dir %s left behind", dir)
			os.RemoveAll(dir)
		}
	})
	return dir
}
