package engine

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// runKeyOf stats exe (following symlinks, as exec does).
func runKeyOf(exe string) (runKey, bool) {
	var st unix.Stat_t
	if unix.Stat(exe, &st) != nil {
		return runKey{}, false
	}
	return runKey{dev: st.Dev, ino: st.Ino, size: uint64(st.Size), mode: uint64(st.Mode),
		ctimeSec: uint64(st.Ctim.Sec), ctimeNsec: uint64(st.Ctim.Nsec)}, true
}

// fileMode is the key's mode as os.Stat says it: a regular file's
// permissions, or the type bits checkRunnableMode tells apart.
func (k runKey) fileMode() fs.FileMode {
	m := fs.FileMode(k.mode & 0o777)
	switch k.mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		m |= fs.ModeDir
	default:
		m |= fs.ModeIrregular // a device, FIFO or socket: not regular either
	}
	return m
}
