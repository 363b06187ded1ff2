//go:build linux

package linux

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// lockDir holds the locks that keep one daemon per pin dir. The lock is a
// file outside the pin dir: removing the pin dir (rm -r /sys/fs/bpf/exewall)
// must not free it while the first daemon still runs.
var lockDir = "/run/exewall"

// pinLock is an exclusive lock on a pin dir, held for a backend's life; the
// kernel drops it when the holder dies.
type pinLock struct {
	f    *os.File
	path string
}

func lockPinDir(dir string) (*pinLock, error) {
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return nil, fmt.Errorf("create lock dir: %w", err)
	}
	if err := checkPrivateDir(lockDir); err != nil {
		return nil, fmt.Errorf("lock dir: %w", err)
	}
	name := strings.ReplaceAll(strings.Trim(filepath.Clean(dir), "/"), "/", "-")
	path := filepath.Join(lockDir, "pins-"+name+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open pin lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another exewall daemon is using %s; stop it first (or give this one another --pin-dir)", dir)
		}
		return nil, fmt.Errorf("lock pin dir %s: %w", dir, err)
	}
	return &pinLock{f: f, path: path}, nil
}

// Close unlinks the lock file before releasing it: whoever opens the path
// afterwards gets a new file, and nobody can lock the old one meanwhile.
func (l *pinLock) Close() error {
	if l == nil {
		return nil
	}
	os.Remove(l.path)
	return l.f.Close()
}
