package doctor

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/linux"
)

func run(cgroup, pinDir string) []engine.Check {
	var out []engine.Check
	add := func(name string, ok bool, format string, args ...any) {
		out = append(out, engine.Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	}

	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		add("kernel", true, "Linux %s", unix.ByteSliceToString(uts.Release[:]))
	}
	if data, err := os.ReadFile("/sys/kernel/security/lockdown"); err == nil {
		mode := string(data)
		if i, j := strings.Index(mode, "["), strings.Index(mode, "]"); i >= 0 && j > i {
			mode = mode[i+1 : j]
		}
		add("lockdown", true, "%s (cgroup hooks work under lockdown; kprobes and bpf_probe_read of kernel memory may not)", strings.TrimSpace(mode))
	}

	caps, err := effectiveCaps()
	switch {
	case err != nil:
		add("privileges", false, "cannot read capabilities: %v", err)
	case caps&(1<<21) != 0 || caps&(1<<39) != 0 && caps&(1<<12) != 0:
		add("privileges", true, "can load eBPF programs and read netlink (CAP_BPF/CAP_SYS_ADMIN, CAP_NET_ADMIN)")
	default:
		add("privileges", false, "missing CAP_BPF or CAP_NET_ADMIN: run as root (sudo exewall ...)")
	}

	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err == nil {
		add("btf", true, "kernel BTF at /sys/kernel/btf/vmlinux")
	} else {
		add("btf", false, "no /sys/kernel/btf/vmlinux: build the kernel with CONFIG_DEBUG_INFO_BTF=y")
	}

	root, err := linux.CgroupMount()
	if err != nil {
		add("cgroup v2", false, "%v", err)
	} else {
		add("cgroup v2", true, "mounted at %s", root)
	}
	if cgroup == "" {
		cgroup = root
	}

	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/bpf", &st) == nil && st.Type == unix.BPF_FS_MAGIC {
		add("bpffs", true, "mounted at /sys/fs/bpf (pins survive the daemon)")
	} else {
		add("bpffs", true, "not mounted at /sys/fs/bpf; the daemon mounts it when it starts")
	}

	for _, h := range []struct {
		name string
		pt   ebpf.ProgramType
		need bool
		what string
	}{
		{"cgroup/connect, sendmsg hooks", ebpf.CGroupSockAddr, true, "judge connect() and sendmsg() per executable"},
		{"cgroup/sock_create hook", ebpf.CGroupSock, false, "optional"},
		{"tracing (fentry/fexit)", ebpf.Tracing, false, "optional, not used"},
		{"lsm hooks", ebpf.LSM, false, "optional, not used"},
	} {
		if err := features.HaveProgramType(h.pt); err != nil {
			if h.need {
				add(h.name, false, "cannot load: %v; a kernel with CONFIG_CGROUP_BPF is needed", err)
			} else {
				add(h.name, true, "not available here (%v); %s", short(err), h.what)
			}
			continue
		}
		add(h.name, true, "loads: %s", h.what)
	}
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		add("ring buffer", false, "BPF ring buffer unavailable (%v): violations cannot be reported; kernel 5.8 or later is needed", short(err))
	} else {
		add("ring buffer", true, "BPF ring buffer available for violation events")
	}

	if cgroup != "" {
		add("attached to "+cgroup, true, "%s", attached(cgroup))
	}
	add("exewall state", true, "%s", pinned(pinDir))
	return out
}

func short(err error) string {
	if errors.Is(err, ebpf.ErrNotSupported) {
		return "not supported"
	}
	return err.Error()
}

// effectiveCaps reads CapEff of this process.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}

// attached lists the programs on the cgroup for the hooks exewall uses,
// ours and others' (systemd's, Cilium's), which exewall coexists with.
func attached(cgroup string) string {
	f, err := os.Open(cgroup)
	if err != nil {
		return fmt.Sprintf("cannot open: %v", err)
	}
	defer f.Close()
	var parts []string
	for _, at := range []struct {
		name string
		t    ebpf.AttachType
	}{
		{"connect4", ebpf.AttachCGroupInet4Connect}, {"connect6", ebpf.AttachCGroupInet6Connect},
		{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg}, {"sendmsg6", ebpf.AttachCGroupUDP6Sendmsg},
		{"sock_create", ebpf.AttachCGroupInetSockCreate},
	} {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: at.t})
		if err != nil {
			return fmt.Sprintf("cannot query attached programs: %v", err)
		}
		var names []string
		for _, p := range res.Programs {
			name := fmt.Sprintf("id %d", p.ID)
			if prog, err := ebpf.NewProgramFromID(p.ID); err == nil {
				if info, err := prog.Info(); err == nil && info.Name != "" {
					name = info.Name
				}
				prog.Close()
			}
			names = append(names, name)
		}
		if len(names) > 0 {
			parts = append(parts, at.name+": "+strings.Join(names, ", "))
		}
	}
	if len(parts) == 0 {
		return "no programs attached on exewall's hooks"
	}
	return strings.Join(parts, "; ")
}

func pinned(pinDir string) string {
	links, _ := filepath.Glob(filepath.Join(pinDir, "link_*"))
	if len(links) == 0 {
		return fmt.Sprintf("nothing pinned in %s (no enforcement left by a daemon)", pinDir)
	}
	return fmt.Sprintf("%d links pinned in %s: enforcement stays in force without the daemon", len(links), pinDir)
}
