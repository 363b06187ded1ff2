//go:build linux

package linux

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultPinDir is where links, programs and maps are pinned.
const DefaultPinDir = "/sys/fs/bpf/exewall"

type mount struct {
	point  string
	fstype string
}

func readMounts() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root point options [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		out = append(out, mount{point: unescapeMount(fields[4]), fstype: fields[sep+1]})
	}
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupMount returns where the cgroup v2 hierarchy is mounted
// (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts).
func cgroupMount() (string, error) {
	ms, err := readMounts()
	if err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	best := ""
	for _, m := range ms {
		if m.fstype == "cgroup2" && (best == "" || len(m.point) < len(best)) {
			best = m.point
		}
	}
	if best == "" {
		return "", errors.New("no cgroup v2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup)")
	}
	return best, nil
}

// ensureBPFFS makes sure dir lies on a bpffs, mounting one at /sys/fs/bpf
// when nothing is mounted there, and creates dir.
func ensureBPFFS(dir string) error {
	if isBPFFS(filepath.Dir(dir)) || isBPFFS(dir) {
		return os.MkdirAll(dir, 0o700)
	}
	root := "/sys/fs/bpf"
	if !strings.HasPrefix(filepath.Clean(dir)+"/", root+"/") {
		return fmt.Errorf("pin dir %s is not on a bpffs", dir)
	}
	if !isBPFFS(root) {
		if err := os.MkdirAll(root, 0o700); err != nil {
			return err
		}
		if err := unix.Mount("bpffs", root, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs at %s: %w", root, err)
		}
	}
	return os.MkdirAll(dir, 0o700)
}

func isBPFFS(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.BPF_FS_MAGIC
}

// cgroupID returns the id the kernel gives a cgroup v2 directory (its kernfs
// inode number, what bpf_get_current_ancestor_cgroup_id returns).
func cgroupID(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}
