//go:build linux

package linux

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// checkPrivateDir refuses a directory exewall keeps its pins or locks in
// unless root owns it and only root can enter it (mode 0700; a root-owned
// directory no one else can write is made 0700), and unless no
// other user can rename it away: every parent up to the mount point is
// root's and not writable by others, or sticky. On a bpffs mounted 1777 an
// unprivileged user could otherwise create the pin dir first and later
// unlink the link pins (or plant their own).
func checkPrivateDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s is not a directory (a symlink or file there is refused)", dir)
	}
	if st.Uid == 0 && st.Mode&0o7777 != 0o700 && st.Mode&0o022 == 0 {
		// Root's and writable by nobody else (a kubelet's DirectoryOrCreate
		// makes it 0755): nobody else can have put anything in it, so fix
		// the mode instead of refusing.
		if err := unix.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("make %s private: %w", dir, err)
		}
		st.Mode = st.Mode&^0o7777 | 0o700
	}
	if st.Uid != 0 || st.Mode&0o7777 != 0o700 {
		return fmt.Errorf("%s is owned by uid %d with mode %#o; exewall needs it root's with mode 0700 "+
			"(another user may have created it: remove it, or run `chown root:root %s && chmod 0700 %s` if you trust its content)",
			dir, st.Uid, st.Mode&0o7777, dir, dir)
	}
	for p := filepath.Dir(filepath.Clean(dir)); ; p = filepath.Dir(p) {
		var ps unix.Stat_t
		if err := unix.Stat(p, &ps); err != nil {
			return fmt.Errorf("check %s: %w", p, err)
		}
		if ps.Uid != 0 && ps.Uid != uint32(os.Geteuid()) {
			return fmt.Errorf("%s, a parent of %s, is owned by uid %d: that user can replace exewall's pins", p, dir, ps.Uid)
		}
		if ps.Mode&0o022 != 0 && ps.Mode&unix.S_ISVTX == 0 {
			return fmt.Errorf("%s, a parent of %s, is writable by other users (mode %#o, not sticky): they can replace exewall's pins", p, dir, ps.Mode&0o7777)
		}
		if p == "/" || ps.Dev != st.Dev {
			return nil
		}
	}
}

// pinDirCheck is checkPrivateDir; tests replace it to show what it stops.
var pinDirCheck = checkPrivateDir
