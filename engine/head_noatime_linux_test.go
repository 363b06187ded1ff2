package engine

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func atime(t *testing.T, path string) unix.Timespec {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Atim
}

// TestReadHeadKeepsAccessTime: validating a policy reads the head of every
// executable; it must not update their access times (with relatime the
// first read after a write would, a journalled inode write per file).
func TestReadHeadKeepsAccessTime(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(exe, []byte("\x7fELF not run\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(exe, old, time.Now()); err != nil {
		t.Fatal(err)
	}
	before := atime(t, exe)
	var buf [binprmBufSize]byte
	if n, err := readHead(exe, buf[:]); err != nil || n == 0 {
		t.Fatalf("readHead: %d, %v", n, err)
	}
	if after := atime(t, exe); after != before {
		t.Fatalf("access time moved from %v to %v", before, after)
	}
}

// TestReadHeadWithoutFowner: O_NOATIME is refused on another user's file
// without CAP_FOWNER (an unprivileged CLI validating a policy): readHead
// reads it anyway.
func TestReadHeadWithoutFowner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the file to another user")
	}
	exe := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(exe, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	// Capabilities are per thread: drop CAP_FOWNER from this one only.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	if err := unix.Capget(&hdr, &caps[0]); err != nil {
		t.Fatal(err)
	}
	saved := caps
	caps[0].Effective &^= 1 << unix.CAP_FOWNER
	if err := unix.Capset(&hdr, &caps[0]); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Capset(&hdr, &saved[0]); err != nil {
			t.Errorf("restore capabilities: %v", err)
		}
	}()
	if _, err := unix.Open(exe, unix.O_RDONLY|unix.O_NOATIME, 0); err != unix.EPERM {
		t.Fatalf("O_NOATIME without CAP_FOWNER: %v, want EPERM (the case under test)", err)
	}
	var buf [binprmBufSize]byte
	n, err := readHead(exe, buf[:])
	if err != nil || string(buf[:n]) != "#!/bin/sh\n" {
		t.Fatalf("readHead: %q, %v", buf[:n], err)
	}
}
