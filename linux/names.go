//go:build linux

package linux

import (
	"os"
	"path/filepath"
)

// An exe rule whose path is a symlink (update-alternatives: /usr/bin/java ->
// /etc/alternatives/java -> /usr/lib/jvm/.../java) names whatever the chain
// points to at exec. When the chain is retargeted, the new file's identity
// is unknown until userspace resolves the path again; the exec hook closes
// that gap by the name execve was given: it looks the name's hash up in
// name_rules and records the identity in exe_named, and the datapath lets
// that rule tighten the verdict (never loosen it: a name is only a name,
// another mount namespace can put any program there).

// maxSymlinkHops bounds the chain followed, as the kernel's 40 does.
const maxSymlinkHops = 40

// nameHash is FNV-1a 64 over the name, as bpf/exec.c hashes it.
func nameHash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// symlinkNames lists the names on an exe path's symlink chain: the path and
// every link it goes through, not the final file (covered by its identity
// and place). A path that is not a symlink has none.
func symlinkNames(path string) []string {
	var out []string
	p := filepath.Clean(path)
	for range maxSymlinkHops {
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			break
		}
		if len(p) < nameMaxLen {
			out = append(out, p)
		}
		target, err := os.Readlink(p)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = filepath.Clean(target)
	}
	return out
}

// nameMaxLen is NAME_MAX_LEN of bpf/exewall.h: the exec hook reads at most
// this much of a name (with its terminating NUL).
const nameMaxLen = 256
