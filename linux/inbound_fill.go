//go:build linux

package linux

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// recordCreators gives the sockets that exist when the inbound hooks are
// attached (in_create did not see them made: the policy in force restricted
// nothing inbound) a creator record, so that their inbound events name a
// process: the one under our cgroup that holds the socket, lowest pid first
// (a forking server's parent before its workers), with its uid and comm.
// Records in_create wrote are kept. Only sockets the ingress hook judges get
// one: UDP sockets, and TCP sockets listening or not yet connected. A socket
// nobody under the cgroup holds any more keeps none: its events carry pid 0.
func (b *Backend) recordCreators() (int, error) {
	pids, err := cgroupPids(b.cgroupPath)
	if err != nil {
		return 0, err
	}
	self := os.Getpid()
	seen := map[string]bool{}
	n := 0
	for _, pid := range pids {
		if pid == self {
			continue
		}
		n += b.recordCreatorsOf(pid, seen)
	}
	return n, nil
}

func (b *Backend) recordCreatorsOf(pid int, seen map[string]bool) int {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(pidfd)
	var rec inboundInSock
	rec.Pid = uint32(pid)
	rec.Uid = procUID(pid)
	if comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm")); err == nil {
		for i, c := range []byte(strings.TrimSuffix(string(comm), "\n")) {
			if i < len(rec.Comm)-1 {
				rec.Comm[i] = int8(c)
			}
		}
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || !strings.HasPrefix(target, "socket:[") || seen[target] {
			continue
		}
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dup, err := unix.PidfdGetfd(pidfd, fd, 0)
		if err != nil {
			continue
		}
		if judgedInbound(dup) {
			seen[target] = true
			// The key of socket storage is a socket fd of ours.
			if err := b.inbound.InSocks.Update(uint32(dup), &rec, ebpf.UpdateNoExist); err == nil {
				n++
			}
		}
		unix.Close(dup)
	}
	return n
}

// judgedInbound: an IPv4/IPv6 UDP socket, or a TCP one listening or not
// connected yet (an established one is never judged inbound again).
func judgedInbound(fd int) bool {
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil || dom != unix.AF_INET && dom != unix.AF_INET6 {
		return false
	}
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return false
	}
	switch proto {
	case unix.IPPROTO_UDP:
		return true
	case unix.IPPROTO_TCP:
		if on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err == nil && on == 1 {
			return true
		}
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		return err == nil && info.State == 7 // TCP_CLOSE: not connected yet
	}
	return false
}

func procUID(pid int) uint32 {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			u, _ := strconv.ParseUint(f[1], 10, 32)
			return uint32(u)
		}
	}
	return 0
}

// cgroupPids lists the processes in cg and every cgroup below it, in
// ascending order.
func cgroupPids(cg string) ([]int, error) {
	var pids []int
	err := filepath.WalkDir(cg, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if path == cg {
				return err
			}
			return nil // a cgroup removed meanwhile
		}
		if !d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	slices.Sort(pids)
	return slices.Compact(pids), err
}
