//go:build unix

package platform

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnixWriter(t *testing.T) {
	for _, tc := range []struct {
		uid, gid uint32
		mode     fs.FileMode
		who      string
	}{
		{0, 0, 0o755, ""},
		{0, 0, fs.ModeDir | 0o755, ""},
		{0, 0, fs.ModeDir | 0o775, ""}, // wheel/root's group
		{0, 80, fs.ModeDir | 0o775, "group 80"},
		{0, 0, fs.ModeDir | 0o777, "everyone"},
		{0, 0, fs.ModeDir | fs.ModeSticky | 0o777, ""}, // /tmp
		{501, 20, 0o755, "uid 501 (its owner)"},
		{501, 20, fs.ModeDir | 0o755, "uid 501 (its owner)"}, // a Homebrew prefix
		{0, 0, fs.ModeSymlink | 0o777, ""},
	} {
		if got := unixWriter(tc.uid, tc.gid, tc.mode); got != tc.who {
			t.Errorf("uid %d gid %d %v: %q, want %q", tc.uid, tc.gid, tc.mode, got, tc.who)
		}
	}
}

func TestCheckInstallPath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make root-owned files") // not a kernel test: a plain skip
	}
	base, err := os.MkdirTemp("/var/tmp", "exewall-winmac-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	// /var/tmp is sticky; base is root's, 0700.
	exe := filepath.Join(base, "exewall")
	if err := os.WriteFile(exe, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkInstallPath(exe); err != nil {
		t.Errorf("root-owned path refused: %v", err)
	}
	os.Chmod(base, 0o777)
	if err := checkInstallPath(exe); err == nil || !strings.Contains(err.Error(), "writable by everyone") {
		t.Errorf("world-writable directory: %v", err)
	}
	os.Chmod(base, 0o755)
	os.Chown(exe, 1000, 1000)
	if err := checkInstallPath(exe); err == nil || !strings.Contains(err.Error(), "uid 1000") {
		t.Errorf("user-owned binary: %v", err)
	}
}
