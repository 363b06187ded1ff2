//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

// Checks reports what this machine supports for exewall and, where something
// is missing, what to do about it. It changes nothing.
func Checks(ctx context.Context, cfg Config) []engine.Check {
	var checks []engine.Check
	add := func(name string, ok bool, detail string, args ...any) {
		checks = append(checks, engine.Check{Name: name, OK: ok, Detail: fmt.Sprintf(detail, args...)})
	}

	var uts unix.Utsname
	unix.Uname(&uts)
	add("kernel", true, "%s", unix.ByteSliceToString(uts.Release[:]))

	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err == nil {
		add("btf", true, "kernel BTF at /sys/kernel/btf/vmlinux")
	} else {
		add("btf", false, "no /sys/kernel/btf/vmlinux: use a kernel built with CONFIG_DEBUG_INFO_BTF=y")
	}

	root, err := CgroupMount()
	if err != nil {
		add("cgroup v2", false, "%v", err)
	} else {
		add("cgroup v2", true, "mounted at %s", root)
	}

	pinDir := cfg.PinDir
	if pinDir == "" {
		pinDir = DefaultPinDir
	}
	if isBPFFS("/sys/fs/bpf") {
		add("bpffs", true, "mounted at /sys/fs/bpf")
	} else {
		add("bpffs", false, "not mounted at /sys/fs/bpf; the daemon mounts it on start (or: mount -t bpf bpffs /sys/fs/bpf)")
	}
	if entries, err := os.ReadDir(pinDir); err == nil && len(entries) > 0 {
		add("pins", true, "%d objects pinned in %s (enforcement in place)", len(entries), pinDir)
	} else {
		add("pins", true, "nothing pinned in %s", pinDir)
	}

	caps := capabilities()
	for _, c := range []struct {
		name string
		bit  uint
		why  string
	}{{"CAP_BPF", unix.CAP_BPF, "load programs and maps"}, {"CAP_NET_ADMIN", unix.CAP_NET_ADMIN, "attach to cgroup socket hooks"},
		{"CAP_PERFMON", unix.CAP_PERFMON, "read the executable identity (task BTF)"}, {"CAP_SYS_ADMIN", unix.CAP_SYS_ADMIN, "mount bpffs, run iterators"}} {
		have := caps&(1<<c.bit) != 0
		detail := c.why
		if !have {
			detail = "missing: needed to " + c.why + "; run as root or grant it to the service"
		}
		add(c.name, have, "%s", detail)
	}

	for _, pt := range []struct {
		name string
		typ  ebpf.ProgramType
		use  string
	}{
		{"cgroup_sock_addr", ebpf.CGroupSockAddr, "connect4/6, sendmsg4/6 (the datapath)"},
		{"cgroup_sock", ebpf.CGroupSock, "sock_create"},
		{"fentry", ebpf.Tracing, "fentry/fexit tracing"},
		{"lsm", ebpf.LSM, "LSM hooks"},
	} {
		err := features.HaveProgramType(pt.typ)
		switch {
		case err == nil:
			add("hook "+pt.name, true, "loads: %s", pt.use)
		case errors.Is(err, ebpf.ErrNotSupported):
			add("hook "+pt.name, false, "not supported by this kernel: %s unavailable", pt.use)
		case errors.Is(err, unix.EPERM):
			add("hook "+pt.name, false, "refused by this kernel (lockdown or missing capability): %s unavailable", pt.use)
		default:
			add("hook "+pt.name, false, "probe failed: %v", err)
		}
	}
	if spec, err := loadDatapath(); err == nil {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
		spec.Maps["events"].MaxEntries = uint32(os.Getpagesize())
		var objs datapathObjects
		if err := spec.LoadAndAssign(&objs, nil); err != nil {
			add("datapath", false, "the exewall programs do not load: %v", err)
		} else {
			objs.Close()
			add("datapath", true, "exewall's programs pass the verifier")
		}
	}
	for _, opt := range []struct {
		name, use string
		load      func() error
	}{
		{"hook exec (tp_btf)", "a binary renamed over a rule's path is covered at its first exec", func() error {
			spec, err := loadExecwatch()
			if err != nil {
				return err
			}
			var o execwatchObjects
			if err := spec.LoadAndAssign(&o, nil); err != nil {
				return err
			}
			return o.Close()
		}},
		{"hook guard (setsockopt, egress, post_bind)", "source routes and handed-over ping sockets are refused to restricted programs, accepted sockets carry their creator", func() error {
			spec, err := loadGuard()
			if err != nil {
				return err
			}
			for _, m := range spec.Maps {
				m.Pinning = ebpf.PinNone
			}
			var o guardObjects
			if err := spec.LoadAndAssign(&o, nil); err != nil {
				return err
			}
			return o.Close()
		}},
		{"hook sock_destroy (iter/tcp, iter/udp)", "held connections are cut when a rule tightens", func() error {
			spec, err := loadSockets()
			if err != nil {
				return err
			}
			var o socketsObjects
			if err := spec.LoadAndAssign(&o, nil); err != nil {
				return err
			}
			return o.Close()
		}},
	} {
		if err := opt.load(); err != nil {
			add(opt.name, false, "does not load (%v): without it, not %s", firstLine(err), opt.use)
		} else {
			add(opt.name, true, "loads: %s", opt.use)
		}
	}
	checks = append(checks, familyChecks()...)
	r := NewKernelResolver()
	if r.Fallback != nil {
		add("identity", false, "%v (overlayfs and btrfs executables may not match)", r.Fallback)
	} else {
		add("identity", true, "executables resolved through the kernel's own view (task_file iterator)")
	}
	r.Close()

	cg := cfg.Cgroup
	if cg == "" {
		cg = root
	}
	if cg != "" {
		progs, err := AttachedPrograms(cg)
		switch {
		case err != nil:
			add("attached", false, "cannot list programs on %s: %v", cg, err)
		case len(progs) == 0:
			add("attached", true, "no programs on %s at exewall's hooks", cg)
		default:
			add("attached", true, "on %s: %s", cg, strings.Join(progs, "; "))
		}
	}
	return checks
}

// capabilities returns the effective capability set of this process.
func capabilities() uint64 {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
