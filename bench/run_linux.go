//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/linux"
	"github.com/exewall/exewall/test/kerneltest"
)

// bench is one run's state.
type bench struct {
	o   options
	rep *Report
	cl  *cleaner

	cgRoot   string // the cgroup v2 mount
	base     string // our scratch cgroup; everything else is below it
	clientCg string // where connect-path clients run
	decoyCg  string // a cgroup no client runs in (nftables cgroupv2 rules name it)
	pinBase  string // our directory on bpffs
	tmp      string
	client   string   // copy of this binary the clients run (exewall rules name it)
	decoys   []string // distinct executables for the other exewall rules

	tcpPort, udpPort int
	ncpu             int
}

// sizes are the rule counts of a run.
type sizes struct {
	exewall   []int // connect path
	netfilter []int // nftables and iptables connect path
	apply     int   // apply section
	cliBig    int   // the large CLI policy
	footprint int   // footprint daemon
	stormSecs float64
}

func (b *bench) sizes() sizes {
	if b.o.quick {
		return sizes{exewall: []int{1, 1000, 10000}, netfilter: []int{1, 100, 1000}, apply: 10000, cliBig: 1000, footprint: 10000, stormSecs: 1}
	}
	return sizes{exewall: []int{1, 1000, 100000}, netfilter: []int{1, 1000, 10000}, apply: 10000, cliBig: 10000, footprint: 100000, stormSecs: 3}
}

func run(o options) (rep *Report, retErr error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("run as root: the benchmark attaches eBPF programs and loads nftables/iptables rules")
	}
	rep = &Report{Started: time.Now(), Command: strings.TrimSpace("go run ./bench " + strings.Join(o.args, " ")), Quick: o.quick,
		Rounds: o.rounds, BudgetMs: float64(o.budget) / 1e6, Seed: o.seed, Connect: []ConnectResult{}, Apply: []ApplyResult{}, Notes: []string{}}
	b := &bench{o: o, rep: rep, cl: &cleaner{}, ncpu: runtime.NumCPU()}
	b.cl.onSignal()
	defer func() {
		if err := b.cl.run(); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("cleanup: %w", err))
		}
		rep.Machine.LoadEnd = loadavg()
		rep.Finished = time.Now()
	}()

	lock, err := os.OpenFile("/run/exewall-bench.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return rep, err
	}
	defer lock.Close()
	if err := waitLock(lock, 15*time.Minute); err != nil {
		return rep, err
	}
	if b.cgRoot, err = kerneltest.CgroupMount(); err != nil {
		return rep, err
	}
	for _, s := range sweepStale(b.cgRoot) {
		rep.note("removed %s left by a killed benchmark run", s)
	}
	// With the lock held, an nftables table or iptables chain of ours can
	// only be left over from a killed run.
	if exec.Command("nft", "list", "table", "inet", nftTable).Run() == nil {
		rep.note("removed nftables table inet %s left by a killed benchmark run", nftTable)
		nftRemove()
	}
	if exec.Command("iptables", "-n", "-L", iptChain).Run() == nil {
		rep.note("removed iptables chain %s left by a killed benchmark run", iptChain)
		iptRemove(false)
	}

	rep.Machine = machine()
	fmt.Fprintf(os.Stderr, "bench: %s, %d CPUs, load %.2f %.2f %.2f\n", rep.Machine.CPU, rep.Machine.CPUs,
		rep.Machine.LoadStart[0], rep.Machine.LoadStart[1], rep.Machine.LoadStart[2])
	if err := b.setup(); err != nil {
		return rep, err
	}
	sections := map[string]bool{}
	for _, s := range strings.Split(o.only, ",") {
		sections[strings.TrimSpace(s)] = true
	}
	if sections["connect"] {
		if err := b.connectPath(); err != nil {
			return rep, fmt.Errorf("connect path: %w", err)
		}
	}
	if sections["blocks"] {
		if err := b.blocksSection(); err != nil {
			return rep, fmt.Errorf("building blocks: %w", err)
		}
	}
	if sections["guard"] {
		if err := b.guardSection(); err != nil {
			return rep, fmt.Errorf("guard hooks: %w", err)
		}
	}
	if sections["dns"] {
		if err := b.dnsSection(); err != nil {
			return rep, fmt.Errorf("dns names: %w", err)
		}
	}
	if sections["inbound"] {
		if err := b.inboundSection(); err != nil {
			return rep, fmt.Errorf("inbound: %w", err)
		}
	}
	if sections["apply"] {
		if err := b.applySection(); err != nil {
			return rep, fmt.Errorf("apply: %w", err)
		}
	}
	if sections["scale"] {
		if err := b.scaleSection(); err != nil {
			return rep, fmt.Errorf("scale: %w", err)
		}
	}
	if sections["start"] && !sections["scale"] {
		if err := b.startSection(); err != nil {
			return rep, fmt.Errorf("start: %w", err)
		}
	}
	if sections["storm"] || sections["footprint"] || sections["apply"] {
		if err := b.daemonSections(sections); err != nil {
			return rep, fmt.Errorf("daemon: %w", err)
		}
	}
	return rep, nil
}

// setup creates the scratch cgroups, pin directory, temp directory, client
// copy, decoy executables and the loopback listeners.
func (b *bench) setup() error {
	name := scratchName()
	b.base = filepath.Join(b.cgRoot, name)
	b.clientCg = filepath.Join(b.base, "client")
	b.decoyCg = filepath.Join(b.base, "decoy")
	if err := b.cl.create("scratch cgroup "+b.base, func() error { return kerneltest.RemoveCgroup(b.base) }, func() error {
		for _, d := range []string{b.base, b.clientCg, b.decoyCg} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("create scratch cgroup: %w", err)
	}
	b.pinBase = filepath.Join("/sys/fs/bpf", name)
	if err := b.cl.create("pin directory "+b.pinBase, func() error { return removePins(b.pinBase) }, func() error {
		return os.MkdirAll(b.pinBase, 0o700) // on the bpffs at /sys/fs/bpf
	}); err != nil {
		return fmt.Errorf("create pin directory: %w", err)
	}
	if err := b.cl.create("temp directory", func() error { return os.RemoveAll(b.tmp) }, func() error {
		var err error
		b.tmp, err = os.MkdirTemp("", name+"-")
		return err
	}); err != nil {
		return err
	}
	os.Chmod(b.tmp, 0o755)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b.client = filepath.Join(b.tmp, "bench-client")
	if err := kerneltest.CopyFile(self, b.client); err != nil {
		return err
	}
	n := max(b.sizes().footprint, slicesMax(b.sizes().exewall), b.sizes().apply, slicesMax(b.scaleSizes())) + 1 // one more: the CLI figures add it
	t0 := time.Now()
	if b.decoys, err = makeDecoys(filepath.Join(b.tmp, "decoys"), n); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: created %s decoy executables in %v\n", count(n), time.Since(t0).Round(time.Millisecond))

	return b.startListener()
}

// startListener runs the loopback peer (listenerMain) in a cgroup of its
// own, on the CPUs the clients do not use.
func (b *bench) startListener() error {
	cg := filepath.Join(b.base, "listener")
	var cmd *exec.Cmd
	var out io.ReadCloser
	err := b.cl.create("listener process", func() error {
		if cmd != nil && cmd.Process != nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		return nil
	}, func() error {
		if err := os.Mkdir(cg, 0o755); err != nil {
			return err
		}
		cgfd, err := os.Open(cg)
		if err != nil {
			return err
		}
		defer cgfd.Close()
		cmd = exec.Command(b.client)
		cpu := -1
		if b.ncpu > 1 {
			cpu = 0
		}
		cmd.Env = append(os.Environ(), roleEnv+"=listener", "GOMAXPROCS=1", fmt.Sprintf("EXEWALL_BENCH_CPU=%d", cpu))
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd()), Pdeathsig: syscall.SIGKILL}
		if out, err = cmd.StdoutPipe(); err != nil {
			return err
		}
		return cmd.Start()
	})
	if err != nil {
		return fmt.Errorf("start listener: %w", err)
	}
	if _, err := fmt.Fscan(out, &b.tcpPort, &b.udpPort); err != nil {
		return fmt.Errorf("listener ports: %w", err)
	}
	return nil
}

func slicesMax(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// removePins unpins every backend directory below dir, then dir.
func removePins(dir string) error {
	entries, _ := os.ReadDir(dir)
	var errs []error
	for _, e := range entries {
		if e.IsDir() {
			if err := linux.Reset(context.Background(), linux.Config{PinDir: filepath.Join(dir, e.Name())}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(append(errs, linux.Reset(context.Background(), linux.Config{PinDir: dir}))...)
}

// makeDecoys creates n distinct small executables (distinct inodes, so
// distinct identities for exewall).
func makeDecoys(dir string, n int) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out := make([]string, n)
	body := []byte("\x7fELF decoy: never run\n")
	for i := range n {
		out[i] = filepath.Join(dir, fmt.Sprintf("d%06d", i))
		if err := os.WriteFile(out[i], body, 0o755); err != nil {
			return nil, err
		}
	}
	// Written back now, not half a minute later in the middle of a
	// measurement: the writeback of 100,001 new files took the CPUs
	// while the 100,000-rule daemon started, whose reads of their heads
	// then cost 1.2 s of CPU instead of 0.1 s (start CPU profiles, in the
	// benchmark and out of it).
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return nil, fmt.Errorf("sync the decoys: %w", err)
	}
	return out, nil
}

// runClient runs one client job in cgroup cg and returns its answer.
func (b *bench) runClient(exe, cg string, j job, timeout time.Duration) (jobResult, error) {
	var res jobResult
	cmd, out, errOut, err := b.startClient(exe, cg, j)
	if err != nil {
		return res, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		return res, fmt.Errorf("client took longer than %v", timeout)
	}
	if err != nil {
		return res, fmt.Errorf("client: %v: %s", err, strings.TrimSpace(errOut.String()))
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return res, fmt.Errorf("client answer %q: %w", out.String(), err)
	}
	return res, nil
}

func (b *bench) startClient(exe, cg string, j job) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer, error) {
	in, err := json.Marshal(j)
	if err != nil {
		return nil, nil, nil, err
	}
	cgfd, err := os.Open(cg)
	if err != nil {
		return nil, nil, nil, err
	}
	defer cgfd.Close()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), roleEnv+"=client", "GOMAXPROCS=1")
	cmd.Stdin = bytes.NewReader(in)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd()), Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("start client in %s: %w", cg, err)
	}
	return cmd, &out, &errOut, nil
}

// runTool runs a command (nft, iptables-restore, the exewall CLI) and
// returns its wall time from start to exit.
func runTool(ctx context.Context, stdin []byte, name string, args ...string) (time.Duration, string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return d, out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return d, out.String(), nil
}

func shuffled[T any](rng *rand.Rand, xs []T) []T {
	out := append([]T(nil), xs...)
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// waitLock takes the benchmark lock, waiting up to max for another run to
// finish: two runs side by side would measure each other (and a test run
// that overlaps a developer's benchmark should wait, not fail).
func waitLock(lock *os.File, max time.Duration) error {
	deadline := time.Now().Add(max)
	for said := false; ; said = true {
		err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			return fmt.Errorf("another benchmark run holds /run/exewall-bench.lock (waited %s): %w", max, err)
		}
		if !said {
			fmt.Fprintln(os.Stderr, "bench: waiting for another benchmark run to release /run/exewall-bench.lock")
		}
		time.Sleep(time.Second)
	}
}
