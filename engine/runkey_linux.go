package engine

import "golang.org/x/sys/unix"

// runKeyOf stats exe (following symlinks, as exec does).
func runKeyOf(exe string) (runKey, bool) {
	var st unix.Stat_t
	if unix.Stat(exe, &st) != nil {
		return runKey{}, false
	}
	return runKey{dev: st.Dev, ino: st.Ino, size: uint64(st.Size), mode: uint64(st.Mode),
		ctimeSec: uint64(st.Ctim.Sec), ctimeNsec: uint64(st.Ctim.Nsec)}, true
}
