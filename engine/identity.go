package engine

import (
	"fmt"
	"os/user"
	"strconv"
)

// FileID is an executable's identity as the kernel sees it: the device of its
// superblock (kernel dev_t encoding), its inode number and inode generation.
// Two paths to one file (hard link, symlink, bind mount) have one FileID; a
// new file that reuses a freed inode number gets a new generation.
type FileID struct {
	Dev uint32 `json:"dev"`
	Gen uint32 `json:"gen"`
	Ino uint64 `json:"ino"`
}

func (f FileID) String() string {
	return fmt.Sprintf("dev=%d:%d ino=%d gen=%d", f.Dev>>20, f.Dev&0xfffff, f.Ino, f.Gen)
}

// Resolver maps an executable path to its FileID. Each OS supplies one (Linux
// asks the kernel); ok is false when the file does not exist (yet).
type Resolver interface {
	Identify(path string) (id FileID, ok bool, err error)
}

// A PassResolver answers a run of Identify calls (one per rule of a
// policy) as of one instant: Pass reads what changed on disk once, and the
// resolver it returns answers from that. The Linux backend otherwise reads
// its inotify queue at every call, a system call per rule.
type PassResolver interface {
	Resolver
	Pass() Resolver
}

// onePass returns the resolver for one run of lookups with r.
func onePass(r Resolver) Resolver {
	if pr, ok := r.(PassResolver); ok {
		return pr.Pass()
	}
	return r
}

// LookupUID resolves a user: selector (a name or a number) to a uid.
func LookupUID(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, fmt.Errorf("unknown user %q", s)
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("user %q has non-numeric uid %q", s, u.Uid)
	}
	return uint32(n), nil
}

// LookupGID resolves a group: selector (a name or a number) to a gid.
func LookupGID(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return 0, fmt.Errorf("unknown group %q", s)
	}
	n, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("group %q has non-numeric gid %q", s, g.Gid)
	}
	return uint32(n), nil
}
