//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/linux"
	"github.com/exewall/exewall/test/kerneltest"
)

// scaleSizes are the rule counts of the scale section.
func (b *bench) scaleSizes() []int {
	if b.o.quick {
		return []int{1000, 10000}
	}
	return []int{10000, 100000}
}

// onePctPolicy is variant 0 of decoyPolicy with the rules i%100 == k-1
// turned to another action (k = 0: none), so that two of k = 0, 1, 2 differ
// in 1% of the rules (2% for 1 against 2).
func onePctPolicy(n, k int, decoys []string) *engine.Policy {
	p := decoyPolicy(n, 0, decoys)
	if k == 0 {
		return p
	}
	for i := k - 1; i < n; i += 100 {
		p.Rules[i] = decoyRule(i, decoys[i], 1)
	}
	return p
}

// scaleSection measures issue 18 side by side in one run: putting n rules in
// force in-process (fresh backend, every rule changed, 1% changed) against
// nft -f and iptables-restore of n rules; then daemons: start to READY,
// memory and idle CPU with no rules (fresh, then adopting the pins of the
// one before) and with each n, and one rule changed through the CLI.
func (b *bench) scaleSection() error {
	b.rep.Scale = &ScaleResult{}
	for _, n := range b.scaleSizes() {
		if err := b.scaleApply(n); err != nil {
			return err
		}
	}
	bin, err := b.buildExewall()
	if err != nil {
		b.rep.note("exewall CLI/daemon unavailable, scale daemon figures skipped: %v", err)
		return nil
	}
	if err := b.scaleIdle(bin); err != nil {
		return err
	}
	for _, n := range b.scaleSizes() {
		if err := b.scaleDaemon(bin, n); err != nil {
			return err
		}
	}
	return nil
}

// startSection is the part of the scale section about starting: daemons
// with no rules, fresh and adopting pins (start to READY, memory, idle CPU).
func (b *bench) startSection() error {
	b.rep.Scale = &ScaleResult{}
	bin, err := b.buildExewall()
	if err != nil {
		return err
	}
	return b.scaleIdle(bin)
}

func (b *bench) addScaleApply(eng, what string, n int, ms []float64, rssKiB int) {
	a := ScaleApply{Engine: eng, What: what, Rules: n, Ms: ms, MaxRSSKiB: rssKiB, Load1: loadavg()[0]}
	a.Median, _, _ = msStats(ms)
	b.rep.Scale.Apply = append(b.rep.Scale.Apply, a)
	fmt.Fprintf(os.Stderr, "bench: scale: %s %s, %s rules: %s\n", eng, what, count(n), msStr(a.Median))
}

func (b *bench) scaleApply(n int) error {
	ctx := context.Background()
	// Medians of enough runs that one slow run on a noisy VM does not move
	// a 100k/10k ratio by itself (runs of 3 put the same code at 7.5x and
	// 11.1x).
	reps := 9
	if n >= 100000 {
		reps = 5
	}
	fmt.Fprintf(os.Stderr, "bench: scale: apply %s rules\n", count(n))
	full := []*engine.Policy{decoyPolicy(n, 0, b.decoys), decoyPolicy(n, 1, b.decoys), decoyPolicy(n, 2, b.decoys)}
	pct := []*engine.Policy{onePctPolicy(n, 0, b.decoys), onePctPolicy(n, 1, b.decoys), onePctPolicy(n, 2, b.decoys)}
	cg := filepath.Join(b.base, fmt.Sprintf("scale-%d", n))
	if err := b.cl.create("cgroup "+cg, func() error { return kerneltest.RemoveCgroup(cg) }, func() error { return os.Mkdir(cg, 0o755) }); err != nil {
		return err
	}

	var fresh []float64
	for i := range reps {
		mark := b.cl.mark()
		be, err := b.newBackend(cg, fmt.Sprintf("scale-fresh-%d-%d", n, i))
		if err != nil {
			return err
		}
		t0 := time.Now()
		err = be.Apply(ctx, full[0])
		fresh = append(fresh, float64(time.Since(t0))/1e6)
		if rerr := b.cl.release(mark); err != nil || rerr != nil {
			return errors.Join(err, rerr)
		}
	}
	b.addScaleApply(engExewall, scaleFresh, n, fresh, 0)

	mark := b.cl.mark()
	be, err := b.newBackend(cg, fmt.Sprintf("scale-replace-%d", n))
	if err != nil {
		return err
	}
	// Both generations filled once; each apply below differs from what the
	// idle generation holds in every rule (three variants in turn).
	for _, p := range full[:2] {
		if err := be.Apply(ctx, p); err != nil {
			b.cl.release(mark)
			return err
		}
	}
	ms, err := timeIt(reps, func(i int) error { return be.Apply(ctx, full[(i+2)%3]) })
	if err != nil {
		b.cl.release(mark)
		return err
	}
	b.addScaleApply(engExewall, scaleAll, n, ms, 0)
	for range 2 {
		if err := be.Apply(ctx, pct[0]); err != nil {
			b.cl.release(mark)
			return err
		}
	}
	ms, err = timeIt(reps*2, func(i int) error { return be.Apply(ctx, pct[(i+1)%3]) })
	if err != nil {
		b.cl.release(mark)
		return err
	}
	b.addScaleApply(engExewall, scaleOnePct, n, ms, 0)
	if err := b.cl.release(mark); err != nil {
		return err
	}

	nftFile, err := b.writeRuleFile(fmt.Sprintf("nft-scale-%d.nft", n), b.nftRuleset(n))
	if err != nil {
		return err
	}
	iptFile, err := b.writeRuleFile(fmt.Sprintf("ipt-scale-%d.rules", n), iptRules(n))
	if err != nil {
		return err
	}
	filterExisted := filterTableExists()
	for _, tool := range []struct {
		eng, what string
		remove    func() error
		cmd       []string
	}{
		{engNftables, "nft -f (new table with all rules)", nftRemove, []string{"nft", "-f", nftFile}},
		{engIptables, "iptables-restore --noflush (new chain with all rules)", func() error { return iptRemove(!filterExisted) },
			[]string{"iptables-restore", "--noflush", iptFile}},
	} {
		var ms []float64
		peak := 0
		for range reps {
			mark := b.cl.mark()
			mc, err := b.memcg(fmt.Sprintf("tool-%d", time.Now().UnixNano()))
			if err != nil {
				b.cl.release(mark)
				return err
			}
			var d time.Duration
			var rss int
			if err := b.cl.create(tool.eng+" rules", tool.remove, func() error {
				var err error
				d, rss, err = runToolMem(ctx, mc, tool.cmd...)
				return err
			}); err != nil {
				b.cl.release(mark)
				return err
			}
			ms = append(ms, float64(d)/1e6)
			peak = max(peak, rss)
			if err := b.cl.release(mark); err != nil {
				return err
			}
		}
		b.addScaleApply(tool.eng, tool.what, n, ms, peak)
	}
	return nil
}

// runToolMem runs a command in a memory cgroup of its own (v1; none when
// this kernel has no v1 memory controller) and returns its wall time and
// the cgroup's peak usage: the tool's memory and what it had the kernel
// allocate (the rules). The child's ru_maxrss is no measure here: a child
// forked from the benchmark starts with the benchmark's resident set.
func runToolMem(ctx context.Context, mc string, argv ...string) (time.Duration, int, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if mc != "" {
		cmd = exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", `echo $$ > "$EXEWALL_BENCH_MEMCG/cgroup.procs" && exec "$@"`, "sh"}, argv...)...)
		cmd.Env = append(os.Environ(), "EXEWALL_BENCH_MEMCG="+mc)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return d, 0, fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(out.String()))
	}
	peak := 0
	if mc != "" {
		peak = readKiB(filepath.Join(mc, "memory.max_usage_in_bytes"))
	}
	return d, peak, nil
}

// memcg makes a v1 memory cgroup for one daemon (this kernel's cgroup v2
// mount has no memory controller), removed when the daemon is gone.
func (b *bench) memcg(name string) (string, error) {
	dir := filepath.Join("/sys/fs/cgroup/memory", filepath.Base(b.base)+"-"+name)
	if _, err := os.Stat("/sys/fs/cgroup/memory/cgroup.procs"); err != nil {
		return "", nil // no v1 memory controller: RSS only
	}
	err := b.cl.create("memory cgroup "+dir, func() error { return os.Remove(dir) }, func() error { return os.Mkdir(dir, 0o755) })
	return dir, err
}

// readWhole reads a file once, so that its page cache is in place, and
// charged to the benchmark's memory cgroup, before a daemon runs it: else
// the first daemon's cgroup is charged for the binary's pages it faults in
// (24 MiB of a 41 MiB "no rules" figure, against 17 MiB for the daemons
// after it, with the page cache dropped before the run).
func readWhole(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

func readKiB(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var v int64
	fmt.Sscan(strings.TrimSpace(string(data)), &v)
	return int(v / 1024)
}

// settle measures a daemon after READY: memory 2 s later (once it has
// released what only the load needed), idle CPU from 2 s to 5 s.
func (b *bench) settle(d *daemon, memcg string, rules int, pins string) ScaleDaemon {
	pid := d.cmd.Process.Pid
	time.Sleep(2 * time.Second)
	c0 := cpuTicks(pid)
	s := ScaleDaemon{Rules: rules, Pins: pins, ReadyMs: float64(d.start) / 1e6, Load1: loadavg()[0],
		StartCPUMs: float64(d.startCPU) / 1e6, OthersCPUMs: float64(d.othersCPU) / 1e6, StolenCPUMs: float64(d.stolenCPU) / 1e6,
		RSSKiB: kerneltest.ProcKB(pid, "VmRSS"), RssAnonKiB: kerneltest.ProcKB(pid, "RssAnon"), HWMKiB: kerneltest.ProcKB(pid, "VmHWM")}
	if memcg != "" {
		s.MemcgKiB = readKiB(filepath.Join(memcg, "memory.usage_in_bytes"))
		s.KmemKiB = readKiB(filepath.Join(memcg, "memory.kmem.usage_in_bytes"))
	}
	time.Sleep(3 * time.Second)
	s.IdleCPUPct = float64(cpuTicks(pid)-c0) / 3
	return s
}

// scaleIdle starts daemons with no rules: two on fresh pin dirs, then three
// in turn adopting the pins the one before left.
func (b *bench) scaleIdle(bin string) error {
	fmt.Fprintln(os.Stderr, "bench: scale: daemons with no rules, fresh and adopting pins")
	if err := readWhole(bin); err != nil {
		return err
	}
	for i := range 2 {
		mark := b.cl.mark()
		mc, err := b.memcg(fmt.Sprintf("idle-%d", i))
		if err != nil {
			return err
		}
		d, err := b.startDaemonWith(bin, fmt.Sprintf("scale-idle-%d", i), nil, daemonOpts{memcg: mc})
		if err != nil {
			b.cl.release(mark)
			return err
		}
		b.rep.Scale.Daemon = append(b.rep.Scale.Daemon, b.settle(d, mc, 0, "none"))
		if err := b.cl.release(mark); err != nil {
			return err
		}
	}
	pinDir := filepath.Join(b.pinBase, "scale-adopt")
	cg := filepath.Join(b.base, "scale-adopt")
	if err := b.cl.create("cgroup "+cg, func() error { return kerneltest.RemoveCgroup(cg) }, func() error { return os.Mkdir(cg, 0o755) }); err != nil {
		return err
	}
	if err := b.cl.create("pins "+pinDir, func() error { return linux.Reset(context.Background(), linux.Config{PinDir: pinDir}) }, func() error { return nil }); err != nil {
		return err
	}
	for i := range 4 {
		mark := b.cl.mark()
		mc, err := b.memcg(fmt.Sprintf("adopt-%d", i))
		if err != nil {
			return err
		}
		d, err := b.startDaemonWith(bin, fmt.Sprintf("scale-adopt-%d", i), nil, daemonOpts{pinDir: pinDir, cgroup: cg, keepPins: i < 3, memcg: mc})
		if err != nil {
			b.cl.release(mark)
			return err
		}
		pins := "adopted"
		if i == 0 {
			pins = "none"
		}
		b.rep.Scale.Daemon = append(b.rep.Scale.Daemon, b.settle(d, mc, 0, pins))
		if err := b.cl.release(mark); err != nil {
			return err
		}
	}
	return nil
}

// scaleDaemon starts a daemon on n rules, measures it, then changes one
// rule through the CLI a few times. At the largest n it also writes the
// daemon's heap profile (EXEWALL_HEAP_PROFILE) and keeps its top.
func (b *bench) scaleDaemon(bin string, n int) error {
	fmt.Fprintf(os.Stderr, "bench: scale: daemon with %s rules\n", count(n))
	data, err := engine.Marshal(decoyPolicy(n, 0, b.decoys))
	if err != nil {
		return err
	}
	mark := b.cl.mark()
	defer b.cl.release(mark)
	mc, err := b.memcg(fmt.Sprintf("rules-%d", n))
	if err != nil {
		return err
	}
	d, err := b.startDaemonWith(bin, fmt.Sprintf("scale-daemon-%d", n), data, daemonOpts{memcg: mc})
	if err != nil {
		return err
	}
	s := b.settle(d, mc, n, "none")
	reps := 10
	if n >= 100000 {
		reps = 5
	}
	target := b.decoys[n] // not named by the policy yet
	for i := range reps {
		action := []string{"deny", "allow"}[i%2]
		dur, _, err := b.cli(bin, d, action, "--name", "bench-change", target)
		if err != nil {
			return err
		}
		s.CLIMs = append(s.CLIMs, float64(dur)/1e6)
		if err := checkPersisted(d.policy, "bench-change", action, n+1); err != nil {
			return err
		}
	}
	s.CLIMedian, _, _ = msStats(s.CLIMs)
	// What the kernel holds is exactly the policy, and what the daemon
	// keeps once the changes' garbage is given back (trimHeap looks every
	// 5 s).
	dur, out, err := b.cli(bin, d, "sync")
	if err != nil {
		return fmt.Errorf("sync after the CLI changes: %w: %s", err, out)
	}
	s.SyncMs, s.SyncReport = float64(dur)/1e6, strings.TrimSpace(out)
	time.Sleep(7 * time.Second)
	s.SettledAnonKiB = kerneltest.ProcKB(d.cmd.Process.Pid, "RssAnon")
	// Started again on the same state dir (the runnable cache: engine/
	// runnable.go) and policy file, on fresh pins: what a restart sees.
	if err := d.stop(); err != nil {
		return err
	}
	// The heap profile is this daemon's (the same policy): sampling
	// allocations costs memory of its own, which the figures above do not
	// carry (the daemon samples only when asked).
	heap := filepath.Join(b.tmp, fmt.Sprintf("daemon-heap-%d.pprof", n))
	again, err := b.startDaemonWith(bin, fmt.Sprintf("scale-daemon-%d", n), nil, daemonOpts{env: []string{"EXEWALL_HEAP_PROFILE=" + heap}})
	if err != nil {
		return fmt.Errorf("restart on its state dir: %w", err)
	}
	s.RestartMs = float64(again.start) / 1e6
	if n == b.scaleSizes()[len(b.scaleSizes())-1] {
		// Written (and renamed into place) once the daemon is ready, from
		// its own goroutine.
		for i := 0; i < 50 && !fileHasData(heap); i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if out, err := exec.Command("go", "tool", "pprof", "-top", "-sample_index=inuse_space", "-nodecount=20", bin, heap).CombinedOutput(); err != nil {
			b.rep.note("daemon heap profile unavailable: %v: %s", err, strings.TrimSpace(string(out)))
		} else {
			b.rep.Scale.HeapTop = strings.Split(strings.TrimSpace(string(out)), "\n")
		}
	}
	b.rep.Scale.Daemon = append(b.rep.Scale.Daemon, s)
	return nil
}

// fileHasData says whether path exists and is not empty.
func fileHasData(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Size() > 0
}
