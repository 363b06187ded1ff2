//go:build unix

package platform

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// checkInstallPath refuses a service executable that anyone but root could
// replace: the service runs it as root at every boot, so a binary in a
// user-writable place (a Downloads folder, a Homebrew prefix owned by the
// user) would hand root to that user. The file, and every directory on its
// path (the path as given and the one its symlinks lead to), must be owned
// by root and writable by no group but root's and by no others; a sticky
// directory (/tmp) protects what root owns in it.
func checkInstallPath(exe string) error {
	paths := []string{filepath.Clean(exe)}
	if real, err := filepath.EvalSymlinks(exe); err == nil && real != paths[0] {
		paths = append(paths, real)
	}
	for _, p := range paths {
		for q := p; ; q = filepath.Dir(q) {
			fi, err := os.Lstat(q)
			if err != nil {
				return fmt.Errorf("check service executable: %w", err)
			}
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				return fmt.Errorf("check service executable: no owner for %s", q)
			}
			if who := unixWriter(uint32(st.Uid), uint32(st.Gid), fi.Mode()); who != "" {
				return unsafeInstall(exe, q, who)
			}
			if q == filepath.Dir(q) {
				break
			}
		}
	}
	return nil
}

// unixWriter names who other than root may change a file or directory with
// this owner and mode ("" when nobody): a symlink's own mode does not
// count, its target is checked as a path of its own.
func unixWriter(uid, gid uint32, mode fs.FileMode) string {
	switch {
	case mode&fs.ModeSymlink != 0:
		if uid != 0 {
			return fmt.Sprintf("uid %d (its owner)", uid)
		}
		return ""
	case uid != 0:
		return fmt.Sprintf("uid %d (its owner)", uid)
	case mode.IsDir() && mode&fs.ModeSticky != 0:
		return ""
	case mode&0o002 != 0:
		return "everyone"
	case mode&0o020 != 0 && gid != 0:
		return fmt.Sprintf("group %d", gid)
	}
	return ""
}

func unsafeInstall(exe, where, who string) error {
	return fmt.Errorf("refusing to install %s as a service: %s is writable by %s, which could replace what runs as root; "+
		"copy it where only root can write (sudo install -d -o root -m 0755 /usr/local/exewall && sudo install -o root -m 0755 %s /usr/local/exewall/) and install from there",
		exe, where, who, filepath.Base(exe))
}
