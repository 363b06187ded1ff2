//go:build linux

package linux

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockPinDir takes an exclusive lock on the pin directory itself (bpffs has
// no regular files to lock), so a second daemon is refused while the first
// keeps working. The kernel drops the lock when the holder dies.
func lockPinDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open pin dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another exewall daemon is using %s; stop it first (or give this one another --pin-dir)", dir)
		}
		return nil, fmt.Errorf("lock pin dir %s: %w", dir, err)
	}
	return f, nil
}
