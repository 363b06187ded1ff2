//go:build linux

package linux

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

// The cgroup hooks exewall uses run for inet sockets only (cgroup
// sock_create is called from inet_create/inet6_create), and this kernel
// kind refuses LSM programs: a family outside AF_INET/AF_INET6 that a user
// can open without privileges is a way around every rule. Which ones exist
// depends on the kernel build and its modules, so doctor reports them.
type netFamily struct {
	name   string
	af     int
	typ    int    // a socket type that needs no capability
	module string // the module that provides it (autoloaded on socket())
}

var unprivilegedFamilies = []netFamily{
	{"AF_VSOCK", unix.AF_VSOCK, unix.SOCK_STREAM, "vsock"},
	{"AF_TIPC", unix.AF_TIPC, unix.SOCK_RDM, "tipc"},
	{"AF_RDS", unix.AF_RDS, unix.SOCK_SEQPACKET, "rds"},
	{"AF_CAN", unix.AF_CAN, unix.SOCK_RAW, "can"},
	{"AF_BLUETOOTH", unix.AF_BLUETOOTH, unix.SOCK_SEQPACKET, "bluetooth"},
}

// familyReach says whether f is open to any user here: "built in" (the
// family answers socket()), "module" (a module would be autoloaded on the
// first socket()), or "" (absent). It loads nothing: socket() is tried only
// for a family the kernel already has.
func familyReach(f netFamily) string {
	if familyRegistered(f) {
		fd, err := unix.Socket(f.af, f.typ|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
			return "available"
		}
		if !errors.Is(err, unix.EAFNOSUPPORT) {
			return "available"
		}
	}
	if moduleLoadable(f.module) {
		return "module"
	}
	return ""
}

// familyRegistered: /proc/net/protocols names every protocol the kernel has
// registered (built in or loaded).
func familyRegistered(f netFamily) bool {
	data, err := os.ReadFile("/proc/net/protocols")
	if err != nil {
		return true // unknown: let socket() answer
	}
	prefix := map[int][]string{unix.AF_VSOCK: {"AF_VSOCK"}, unix.AF_TIPC: {"TIPC"}, unix.AF_RDS: {"RDS"},
		unix.AF_CAN: {"CAN_"}, unix.AF_BLUETOOTH: {"L2CAP", "RFCOMM", "SCO", "HCI"}}[f.af]
	for _, line := range strings.Split(string(data), "\n") {
		for _, p := range prefix {
			if strings.HasPrefix(line, p) {
				return true
			}
		}
	}
	return false
}

// moduleLoadable: a module for the family is installed for this kernel and
// not blacklisted with "install <name> /bin/false" (or true) in modprobe.d.
func moduleLoadable(name string) bool {
	var uts unix.Utsname
	unix.Uname(&uts)
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:]))
	if _, err := os.Stat("/proc/modules"); err != nil {
		return false // no loadable module support
	}
	found := false
	filepath.WalkDir(filepath.Join(dir, "kernel", "net"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), name+".ko") {
			found = true
			return filepath.SkipAll
		}
		return nil
	})
	if !found {
		return false
	}
	confs, _ := filepath.Glob("/etc/modprobe.d/*.conf")
	for _, c := range confs {
		data, _ := os.ReadFile(c)
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && f[0] == "install" && f[1] == name && (strings.HasSuffix(f[2], "/false") || strings.HasSuffix(f[2], "/true")) {
				return false
			}
		}
	}
	return true
}

// familyChecks is one doctor line per family; tests replace it to show what
// its absence hides.
var familyChecks = func() []engine.Check {
	var out []engine.Check
	for _, f := range unprivilegedFamilies {
		// A finding about the machine, not a fault of exewall: doctor shows
		// it without failing.
		c := engine.Check{Name: "family " + f.name, Finding: true}
		switch familyReach(f) {
		case "":
			c.OK, c.Detail = true, "not available on this kernel: no way around the rules here"
		case "module":
			c.Detail = fmt.Sprintf("any user can open it once the %s module autoloads, and exewall cannot judge it "+
				"(cgroup hooks see inet sockets only): blacklist the module (install %s /bin/false in /etc/modprobe.d) "+
				"or confine untrusted services with RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", f.module, f.module)
		default:
			c.Detail = fmt.Sprintf("any user can open it (built into this kernel), and exewall cannot judge it "+
				"(cgroup hooks see inet sockets only): confine untrusted services with RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 "+
				"(systemd), or use a kernel without it (or with %s as a blacklisted module)", f.module)
		}
		out = append(out, c)
	}
	return out
}
