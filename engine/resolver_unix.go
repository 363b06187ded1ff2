//go:build unix

package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"syscall"
)

// Identify implements Resolver.
func (StatResolver) Identify(path string) (FileID, bool, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return FileID{}, false, nil
	}
	if err != nil {
		return FileID{}, false, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return FileID{}, false, fmt.Errorf("stat %s: no unix file identity", path)
	}
	return FileID{Dev: kernelDev(uint64(st.Dev)), Ino: uint64(st.Ino)}, true, nil
}

// kernelDev converts a userspace dev_t to the encoding the Linux kernel uses
// inside (MKDEV: major<<20 | minor), which is what a BPF program reads from
// an inode's superblock.
func kernelDev(dev uint64) uint32 {
	if runtime.GOOS != "linux" && runtime.GOOS != "android" {
		return uint32(dev)
	}
	major := uint32((dev>>8)&0xfff | (dev>>32)&^0xfff)
	minor := uint32(dev&0xff | (dev>>12)&^0xff)
	return major<<20 | minor&0xfffff
}
