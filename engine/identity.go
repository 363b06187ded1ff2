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

// A BatchResolver identifies many executables in one call (Linux: one
// kernel pass for hundreds of paths, where Identify pays one per path).
// Paths with no file are absent from the answer.
type BatchResolver interface {
	Resolver
	IdentifyAll(paths []string) (map[string]FileID, error)
}

// foundResolver answers from what one IdentifyAll found.
type foundResolver map[string]FileID

func (f foundResolver) Identify(path string) (FileID, bool, error) {
	id, ok := f[path]
	return id, ok, nil
}

// identifyRules returns a resolver that answers for every exe of rules from
// one IdentifyAll when r can (else r itself): validating a policy of
// thousands of rules then costs a few kernel passes, not one per rule. When
// the batch fails, r answers path by path, so the refusal names its rule.
func identifyRules(r Resolver, rules []Rule) Resolver {
	br, ok := r.(BatchResolver)
	if !ok {
		return r
	}
	paths := make([]string, 0, len(rules))
	for i := range rules {
		if rules[i].Exe != "" {
			paths = append(paths, rules[i].Exe)
		}
	}
	if len(paths) < 2 {
		return r
	}
	found, err := br.IdentifyAll(paths)
	if err != nil {
		return r
	}
	return foundResolver(found)
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
