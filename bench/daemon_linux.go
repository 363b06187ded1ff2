//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/linux"
	"github.com/exewall/exewall/test/kerneltest"
)

// daemon is one `exewall daemon` the benchmark started, attached to a
// scratch cgroup of its own with a pin directory of its own.
type daemon struct {
	name     string
	dir      string
	cgroup   string // attach point; clients judged by it run here
	pinDir   string
	socket   string
	policy   string
	stateDir string
	logFile  string
	cmd      *exec.Cmd
	exited   chan struct{}
	start    time.Duration // exec to READY=1
	// What the CPUs did from exec to READY=1: the daemon's CPU time (to
	// READY: the process's), the rest of the machine's (others: the
	// benchmark, kernel threads, anything else), and what the hypervisor
	// took (steal). Tells a slow start from a crowded one.
	startCPU, othersCPU, stolenCPU time.Duration
	keepPins                       bool
}

// buildExewall builds the CLI/daemon unless --exewall names one.
func (b *bench) buildExewall() (string, error) {
	if b.o.exewallBin != "" {
		return b.o.exewallBin, nil
	}
	// The build the tests share (one per source tree).
	out, err := kerneltest.Exewall()
	if err == nil {
		b.rep.Machine.Exewall = "cmd/exewall built from the working tree"
		return out, nil
	}
	out = filepath.Join(b.tmp, "exewall")
	// The working tree may be mid-edit: build the last commit instead, from
	// a copy (git archive only reads the repository).
	first := err
	top, gerr := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if gerr != nil {
		return "", first
	}
	src := filepath.Join(b.tmp, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	arch := exec.Command("sh", "-c", `git -C "$1" archive --format=tar HEAD | tar -x -C "$2"`, "sh", strings.TrimSpace(string(top)), src)
	if msg, err := arch.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v; git archive HEAD: %v: %s", first, err, msg)
	}
	cmd := exec.Command("go", "build", "-o", out, "./cmd/exewall")
	cmd.Dir = src
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v; HEAD does not build either: %v: %s", first, err, strings.TrimSpace(string(msg)))
	}
	rev, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	b.rep.Machine.Exewall = "cmd/exewall built from commit " + strings.TrimSpace(string(rev))
	b.rep.note("the working tree's cmd/exewall does not build (%s); the daemon and CLI figures use commit %s",
		strings.Join(strings.Fields(first.Error()), " "), strings.TrimSpace(string(rev)))
	return out, nil
}

// startDaemon starts a daemon on policy (nil: no policy file, the daemon
// writes its default) and waits for READY=1 on a notify socket, which it
// sends once the policy is in force and the API socket is up.
func (b *bench) startDaemon(bin, name string, policy []byte) (*daemon, error) {
	return b.startDaemonWith(bin, name, policy, daemonOpts{})
}

// daemonOpts vary how startDaemon runs the daemon (scale_linux.go).
type daemonOpts struct {
	pinDir   string // "" = a pin dir of its own; another daemon's to adopt its pins
	keepPins bool   // no --detach-on-exit: enforcement and pins stay when it stops
	memcg    string // a v1 memory cgroup directory to start the daemon in
	cgroup   string // "" = an attach cgroup of its own
	env      []string
}

func (b *bench) startDaemonWith(bin, name string, policy []byte, o daemonOpts) (*daemon, error) {
	d := &daemon{name: name, dir: filepath.Join(b.tmp, name), cgroup: filepath.Join(b.base, name), pinDir: filepath.Join(b.pinBase, name)}
	if o.pinDir != "" {
		d.pinDir = o.pinDir
	}
	if o.cgroup != "" {
		d.cgroup = o.cgroup
	}
	d.keepPins = o.keepPins
	d.socket = filepath.Join(d.dir, "exewall.sock")
	d.policy = filepath.Join(d.dir, "policy.yaml")
	d.stateDir = filepath.Join(d.dir, "state")
	d.logFile = filepath.Join(d.dir, "daemon.log")
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return nil, err
	}
	if policy != nil {
		if err := os.WriteFile(d.policy, policy, 0o644); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(d.cgroup); err != nil {
		if err := b.cl.create("cgroup "+d.cgroup, func() error { return kerneltest.RemoveCgroup(d.cgroup) }, func() error { return os.Mkdir(d.cgroup, 0o755) }); err != nil {
			return nil, err
		}
	}
	notify := filepath.Join(d.dir, "notify.sock")
	os.Remove(notify) // a daemon of this name ran before (a restart)
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	log, err := os.OpenFile(d.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	args := []string{"--socket", d.socket, "daemon", "--cgroup", d.cgroup, "--pin-dir", d.pinDir,
		"--state-dir", d.stateDir, "--policy", d.policy}
	if !o.keepPins {
		args = append(args, "--detach-on-exit")
	}
	d.cmd = exec.Command(bin, args...)
	if o.memcg != "" {
		// The shell joins the memory cgroup, then becomes the daemon (same
		// pid): everything the daemon allocates is charged there.
		d.cmd = exec.Command("/bin/sh", append([]string{"-c", `echo $$ > "$EXEWALL_BENCH_MEMCG/cgroup.procs" && exec "$@"`, "sh", bin}, args...)...)
		d.cmd.Env = append(d.cmd.Env, "EXEWALL_BENCH_MEMCG="+o.memcg)
	}
	d.cmd.Env = append(append(append(d.cmd.Env, os.Environ()...), o.env...), "NOTIFY_SOCKET="+notify)
	d.cmd.Stdout, d.cmd.Stderr = log, log
	// If the benchmark dies, the daemon is told to stop (and detaches).
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	d.exited = make(chan struct{})
	var t0 time.Time
	var stat0 machineCPU
	if err := b.cl.create("daemon "+name, func() error { return d.stop() }, func() error {
		stat0, t0 = readMachineCPU(), time.Now()
		if err := d.cmd.Start(); err != nil {
			return err
		}
		go func() { d.cmd.Wait(); close(d.exited) }()
		return nil
	}); err != nil {
		return nil, err
	}
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, 512)
		nc.SetReadDeadline(time.Now().Add(5 * time.Minute))
		for {
			n, err := nc.Read(buf)
			if err != nil {
				got <- err
				return
			}
			if strings.Contains(string(buf[:n]), "READY=1") {
				got <- nil
				return
			}
		}
	}()
	select {
	case err := <-got:
		if err != nil {
			return nil, fmt.Errorf("daemon %s never notified READY=1: %v; log:\n%s", name, err, tail(d.logFile))
		}
	case <-d.exited:
		return nil, fmt.Errorf("daemon %s exited before it was ready; log:\n%s", name, tail(d.logFile))
	}
	d.start = time.Since(t0)
	d.startCPU = time.Duration(cpuTicks(d.cmd.Process.Pid)) * time.Second / clockTicks
	stat := readMachineCPU()
	d.othersCPU = max(stat.busy-stat0.busy-d.startCPU, 0)
	d.stolenCPU = stat.steal - stat0.steal
	return d, nil
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on Linux.
const clockTicks = 100

// machineCPU is the machine's CPU time from /proc/stat: busy (neither idle
// nor waiting for I/O nor stolen) and stolen by the hypervisor.
type machineCPU struct{ busy, steal time.Duration }

func readMachineCPU() machineCPU {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return machineCPU{}
	}
	var t [8]int64
	for i := range t {
		t[i], _ = strconv.ParseInt(f[i+1], 10, 64)
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clockTicks }
	return machineCPU{busy: tick(t[0] + t[1] + t[2] + t[5] + t[6]), steal: tick(t[7])}
}

// stop sends SIGTERM (the daemon detaches: --detach-on-exit) and makes sure
// nothing stays pinned.
func (d *daemon) stop() error {
	if d.cmd != nil && d.cmd.Process != nil {
		select {
		case <-d.exited:
		default:
			d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.exited:
			case <-time.After(15 * time.Second):
				d.cmd.Process.Kill()
				<-d.exited
			}
		}
	}
	if d.keepPins {
		return nil // the next daemon adopts them; its own stop resets them
	}
	return linux.Reset(context.Background(), linux.Config{PinDir: d.pinDir})
}

func tail(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return string(data)
}

func (b *bench) cli(bin string, d *daemon, args ...string) (time.Duration, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return runTool(ctx, nil, bin, append([]string{"--socket", d.socket}, args...)...)
}

func (b *bench) status(bin string, d *daemon) (engine.Status, error) {
	var st engine.Status
	_, out, err := b.cli(bin, d, "status", "--json")
	if err != nil {
		return st, err
	}
	err = json.Unmarshal([]byte(out), &st)
	return st, err
}

// cpuTicks is utime+stime of a process, in clock ticks (1/100 s).
func cpuTicks(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return ut + st
}

// footprint samples an idle daemon: RSS, peak RSS, CPU over idle seconds.
func (b *bench) footprint(d *daemon, rules int) FootprintPoint {
	idle := 3 * time.Second
	if b.o.quick {
		idle = time.Second
	}
	pid := d.cmd.Process.Pid
	c0 := cpuTicks(pid)
	time.Sleep(idle)
	c1 := cpuTicks(pid)
	rss, hwm := kerneltest.ProcKB(pid, "VmRSS"), kerneltest.ProcKB(pid, "VmHWM")
	return FootprintPoint{Rules: rules, StartMs: float64(d.start) / 1e6, RSSKiB: rss, HWMKiB: hwm,
		IdleCPUPct: float64(c1-c0) / idle.Seconds(), IdleSeconds: idle.Seconds()}
}

func (b *bench) daemonSections(sections map[string]bool) error {
	bin, err := b.buildExewall()
	if err != nil {
		b.rep.note("exewall CLI/daemon unavailable, daemon figures skipped: %v", err)
		if sections["storm"] {
			return b.stormBackend()
		}
		return nil
	}
	b.rep.Footprint = &FootprintResult{}

	if sections["footprint"] || sections["storm"] {
		fmt.Fprintln(os.Stderr, "bench: daemon with 0 rules: footprint, then the storm")
		mark := b.cl.mark()
		d, err := b.startDaemon(bin, "daemon-0", nil)
		if err != nil {
			return err
		}
		if sections["footprint"] {
			b.rep.Footprint.Points = append(b.rep.Footprint.Points, b.footprint(d, 0))
		}
		if sections["storm"] {
			if err := b.stormDaemon(bin, d); err != nil {
				b.cl.release(mark)
				return fmt.Errorf("storm: %w", err)
			}
		}
		if err := b.cl.release(mark); err != nil {
			return err
		}
	}

	if sections["apply"] {
		for _, n := range []int{100, b.sizes().cliBig} {
			if err := b.cliChanges(bin, n); err != nil {
				return err
			}
		}
	}

	if sections["footprint"] {
		n := b.sizes().footprint
		fmt.Fprintf(os.Stderr, "bench: daemon with %s rules: start to enforcing, footprint\n", count(n))
		data, err := engine.Marshal(decoyPolicy(n, 0, b.decoys))
		if err != nil {
			return err
		}
		mark := b.cl.mark()
		d, err := b.startDaemon(bin, fmt.Sprintf("daemon-%d", n), data)
		if err != nil {
			return err
		}
		b.rep.Footprint.Points = append(b.rep.Footprint.Points, b.footprint(d, n))
		if err := b.cl.release(mark); err != nil {
			return err
		}
	}
	return nil
}

// cliChanges times one rule change through the CLI against a daemon holding
// n rules: process start to exit, which the CLI contract says is after the
// change is in force and persisted (checked after each run, untimed).
func (b *bench) cliChanges(bin string, n int) error {
	reps := 10
	if b.o.quick {
		reps = 3
	}
	fmt.Fprintf(os.Stderr, "bench: CLI changes on a %s-rule policy\n", count(n))
	pA := decoyPolicy(n, 0, b.decoys)
	data, err := engine.Marshal(pA)
	if err != nil {
		return err
	}
	mark := b.cl.mark()
	defer b.cl.release(mark)
	d, err := b.startDaemon(bin, fmt.Sprintf("daemon-cli-%d", n), data)
	if err != nil {
		return err
	}
	b.rep.Footprint.Points = append(b.rep.Footprint.Points, b.footprint(d, n))
	target := b.decoys[n] // not named by the policy yet
	var ms []float64
	for i := range reps {
		action := []string{"deny", "allow"}[i%2]
		dur, _, err := b.cli(bin, d, action, "--name", "bench-change", target)
		if err != nil {
			return err
		}
		ms = append(ms, float64(dur)/1e6)
		if err := checkPersisted(d.policy, "bench-change", action, n+1); err != nil {
			return err
		}
	}
	st, err := b.status(bin, d)
	if err != nil {
		return err
	}
	if st.Rules != n+1 {
		return fmt.Errorf("daemon reports %d rules after the changes, want %d", st.Rules, n+1)
	}
	b.rep.addApply(ApplyResult{Engine: engExewall, What: "CLI: one rule change (exewall deny/allow)", Rules: n, Ms: ms,
		Note: "process start to exit = in force and persisted"})

	// apply -f of the whole file, alternating two policies that differ in
	// every rule.
	pB := decoyPolicy(n, 1, b.decoys)
	files := make([]string, 2)
	for i, p := range []*engine.Policy{pB, pA} {
		data, err := engine.Marshal(p)
		if err != nil {
			return err
		}
		files[i] = filepath.Join(d.dir, fmt.Sprintf("apply-%d.yaml", i))
		if err := os.WriteFile(files[i], data, 0o644); err != nil {
			return err
		}
	}
	ms = nil
	for i := range reps {
		dur, _, err := b.cli(bin, d, "apply", "-f", files[i%2])
		if err != nil {
			return err
		}
		ms = append(ms, float64(dur)/1e6)
	}
	if err := checkPersisted(d.policy, "r000000", []string{"allow", "deny"}[(reps-1)%2], n); err != nil {
		return err
	}
	b.rep.addApply(ApplyResult{Engine: engExewall, What: "CLI: exewall apply -f (whole policy replaced)", Rules: n, Ms: ms,
		Note: "parse, validate, apply, persist"})
	return nil
}

// checkPersisted reads the policy file back and checks the rule's action.
func checkPersisted(path, rule, action string, rules int) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	p, err := engine.Parse(data)
	if err != nil {
		return fmt.Errorf("persisted policy: %w", err)
	}
	r := p.RuleByName(rule)
	if r == nil || r.Action.String() != action || len(p.Rules) != rules {
		got := "none"
		if r != nil {
			got = r.Action.String()
		}
		return fmt.Errorf("persisted policy has %d rules and rule %s is %s, want %d rules and %s", len(p.Rules), rule, got, rules, action)
	}
	return nil
}
