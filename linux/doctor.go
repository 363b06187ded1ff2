//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/dnsproxy"
)

// Checks reports what this machine supports for exewall and, where something
// is missing, what to do about it. It changes nothing.
func Checks(ctx context.Context, cfg Config) []engine.Check {
	var checks []engine.Check
	add := func(name string, ok bool, detail string, args ...any) {
		checks = append(checks, engine.Check{Name: name, OK: ok, Detail: fmt.Sprintf(detail, args...)})
	}
	// optional records a missing hook exewall works without, saying what
	// it would add.
	optional := func(name string, detail string, args ...any) {
		checks = append(checks, engine.Check{Name: name, Optional: true, Detail: fmt.Sprintf(detail, args...)})
	}

	var uts unix.Utsname
	unix.Uname(&uts)
	add("kernel", true, "%s", unix.ByteSliceToString(uts.Release[:]))

	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err == nil {
		add("btf", true, "kernel BTF at /sys/kernel/btf/vmlinux")
	} else {
		add("btf", false, "no /sys/kernel/btf/vmlinux: use a kernel built with CONFIG_DEBUG_INFO_BTF=y")
	}

	root, err := cgroupMount()
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
		{"cgroup_sock", ebpf.CGroupSock, "sock_create (the datapath)"},
	} {
		if err := features.HaveProgramType(pt.typ); err != nil {
			add("hook "+pt.name, false, "%s: exewall cannot enforce without %s", refusal(err), pt.use)
		} else {
			add("hook "+pt.name, true, "loads: %s", pt.use)
		}
	}
	// exewall enforces without these; each says what it would add.
	for _, pt := range []struct {
		name  string
		typ   ebpf.ProgramType
		would string
	}{
		{"fentry", ebpf.Tracing, "exewall itself does not use fentry programs; `bpftool prog profile` needs them to measure exewall's programs"},
		{"lsm", ebpf.LSM, "exewall does not use LSM programs yet; they would let it cover raw (AF_PACKET) sockets, which the cgroup hooks do not see (docs/SECURITY.md)"},
	} {
		if err := features.HaveProgramType(pt.typ); err != nil {
			optional("hook "+pt.name, "%s; %s", pt.would, refusal(err))
		} else {
			add("hook "+pt.name, true, "loads (%s)", pt.would)
		}
	}
	if spec, err := loadDatapath(); err == nil {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
		spec.Maps["events"].MaxEntries = uint32(os.Getpagesize())
		var objs datapathObjects
		err := spec.LoadAndAssign(&objs, nil)
		var ve *ebpf.VerifierError
		store := "task storage of each process, with a per-thread rule cache"
		if errors.As(err, &ve) && taskStorageRefused(ve) {
			spec.Variables["use_task_storage"].Set(uint8(0))
			err = spec.LoadAndAssign(&objs, nil)
			store = "a map by thread group id (this kernel's cgroup programs cannot use task storage, 6.16+); no rule cache"
		}
		if err != nil {
			add("datapath", false, "exewall's programs do not load: %s", plainError(err))
		} else {
			objs.Close()
			add("datapath", true, "exewall's programs pass the verifier")
			add("identity at exec", true, "kept in %s", store)
		}
	}
	for _, opt := range []struct {
		hook, name, would, without string
		load                       func() error
	}{
		{"exec", "hook exec (tp_btf)", "the identity is taken at exec (prctl cannot change it), ld.so PROGRAM is judged as PROGRAM, an overlay of a file is judged as the file, and a program renamed over a rule's path is covered from its first exec",
			"it is covered once the daemon's watch (every second) sees the new file",
			func() error { return tryLoad(loadExecwatch, &execwatchObjects{}) }},
		{"sock_destroy", "hook sock_destroy (iter/tcp, iter/udp)", "connections a program already holds are cut when a rule tightens",
			"they stay open until the program closes them; new ones are judged by the new rule",
			func() error { return tryLoad(loadSockets, &socketsObjects{}) }},
		{"dns", "hook dns (recvmsg, getpeername)", "name entries (NAME, *.NAME) are enforced: the DNS of rules with name entries goes through exewall's forwarder, which answers from the server the program asked",
			"policies with name entries are refused",
			func() error { return tryLoad(loadDns, &dnsObjects{}) }},
		{"guard", "hook guard (setsockopt, egress, post_bind)", "source routes and echo requests on handed-over ping sockets are refused to restricted programs, and accepted sockets carry their creator",
			"a restricted program can steer packets with a routing header and ping through a socket it is handed",
			func() error {
				spec, err := loadGuard()
				if err != nil {
					return err
				}
				for _, m := range spec.Maps {
					m.Pinning = ebpf.PinNone
				}
				return tryLoadSpec(spec, &guardObjects{})
			}},
		inboundCheck, // inbound.go
	} {
		err := disabledByTest(opt.hook)
		if err == nil {
			err = opt.load()
		}
		if err != nil {
			optional(opt.name, "%s; without it %s. The kernel refused it: %s", opt.would, opt.without, plainError(err))
		} else {
			add(opt.name, true, "loads: %s", opt.would)
		}
	}
	checks = append(checks, familyChecks()...)
	checks = append(checks, dnsproxy.HostChecks(dnsproxy.HostPaths{})...)
	if err := disabledByTest("iter"); err != nil {
		optional("identity", "%v", err)
	} else if r := newResolver(nil, nil); r.fallback != nil {
		optional("identity", "the kernel's own view of each executable (task_file iterator), so programs on overlayfs and btrfs match their rules; without it exewall uses stat(), which can disagree there (%s)", plainError(r.fallback))
	} else {
		r.Close()
		add("identity", true, "executables resolved through the kernel's own view (task_file iterator)")
	}
	if v := os.Getenv(disableEnv); v != "" {
		optional("test switch", "%s=%s: the daemon runs as on a kernel without these hooks", disableEnv, v)
	}

	cg := cfg.Cgroup
	if cg == "" {
		cg = root
	}
	if cg != "" {
		progs, err := listAttached(cg)
		switch {
		case err != nil:
			add("attached", false, "cannot list programs on %s: %s", cg, plainError(err))
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

// tryLoad loads a collection on its own (fresh maps) and releases it.
func tryLoad(spec func() (*ebpf.CollectionSpec, error), objs interface{ Close() error }) error {
	cs, err := spec()
	if err != nil {
		return err
	}
	return tryLoadSpec(cs, objs)
}

// tryLoadSpec loads cs into objs and releases them.
func tryLoadSpec(cs *ebpf.CollectionSpec, objs interface{ Close() error }) error {
	if err := cs.LoadAndAssign(objs, nil); err != nil {
		return err
	}
	return objs.Close()
}

// libraryHint matches what cilium/ebpf adds to its errors for programmers
// ("consider rlimit.RemoveMemlock", "requires >= v4.15"): advice a user
// of doctor cannot act on, and misleading on a kernel that is new enough.
var libraryHint = regexp.MustCompile(`\s*\((MEMLOCK may be too low, consider rlimit\.RemoveMemlock|requires >= v[0-9.]+)\)`)

// plainError is err's first line without library hints.
func plainError(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return libraryHint.ReplaceAllString(s, "")
}

// refusal says in words why the kernel would not load a program type.
func refusal(err error) string {
	switch {
	case errors.Is(err, ebpf.ErrNotSupported):
		return "this kernel does not support it"
	case errors.Is(err, unix.EPERM):
		return "this kernel refuses it (lockdown, or a missing capability)"
	}
	return "the probe failed: " + plainError(err)
}
