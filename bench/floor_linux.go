//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// floorUp attaches the empty programs to cg with unpinned links, which
// detach when closed (or when the benchmark dies).
func (b *bench) floorUp(cg string) error {
	for _, at := range []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupUDP4Sendmsg} {
		if err := b.emptyAt(cg, at); err != nil {
			return err
		}
	}
	return nil
}

// profilePasses is how many times profileAttached runs the client.
const profilePasses = 3

// profileAttached runs op in the client cgroup with BPF run-time statistics
// on, and reads run count and run time of what is attached there. Stats
// cost two clock reads per run, so they are never on during the
// connect-path rounds. The figures are the medians of profilePasses passes.
func (b *bench) profileAttached(eng string, rules int, op string) ([]ProgProfile, error) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enable bpf stats: %w", err)
	}
	defer stats.Close()
	cgfd, err := os.Open(b.clientCg)
	if err != nil {
		return nil, err
	}
	defer cgfd.Close()
	hook := ebpf.AttachCGroupInet4Connect
	hookName := "connect4"
	if op == opUDP {
		hook, hookName = ebpf.AttachCGroupUDP4Sendmsg, "sendmsg4"
	}
	q, err := link.QueryPrograms(link.QueryOptions{Target: int(cgfd.Fd()), Attach: hook})
	if err != nil {
		return nil, err
	}
	var progs []*ebpf.Program
	for _, ap := range q.Programs {
		p, err := ebpf.NewProgramFromID(ap.ID)
		if err != nil {
			return nil, err
		}
		defer p.Close()
		progs = append(progs, p)
	}
	j := job{Op: "tcp", Port: b.tcpPort, Batch: 16, Warmup: 200, Budget: 500 * time.Millisecond, MaxOps: 1 << 20, CPU: b.ncpu - 1}
	if op == opUDP {
		j.Op, j.Port, j.Warmup = "udp", b.udpPort, 2000
	}
	// A few passes, their median: one pass on a shared machine is often
	// off by a burst of someone else's work.
	nsPerRun := make([][]float64, len(progs))
	runs := make([]uint64, len(progs))
	perOp := make([][]float64, len(progs))
	var opNs []float64
	for range profilePasses {
		start := make([]*ebpf.ProgramStats, len(progs))
		for i, p := range progs {
			if start[i], err = p.Stats(); err != nil {
				return nil, err
			}
		}
		res, err := b.runClient(b.client, b.clientCg, j, time.Minute)
		if err != nil {
			return nil, err
		}
		opNs = append(opNs, res.MedianNs)
		for i, p := range progs {
			st, err := p.Stats()
			if err != nil {
				return nil, err
			}
			n := st.RunCount - start[i].RunCount
			runs[i] += n
			if n > 0 {
				nsPerRun[i] = append(nsPerRun[i], float64(st.Runtime-start[i].Runtime)/float64(n))
				perOp[i] = append(perOp[i], float64(n)/float64(res.Ops+j.Warmup))
			}
		}
	}
	var out []ProgProfile
	for i, p := range progs {
		pp := ProgProfile{Engine: eng, Rules: rules, Op: op, Hook: hookName, Runs: runs[i], OpNs: median(opNs)}
		if len(nsPerRun[i]) > 0 {
			pp.NsPerRun = median(nsPerRun[i])
			pp.RunsPerOp = median(perOp[i])
		}
		if info, err := p.Info(); err == nil {
			if insns, err := info.Instructions(); err == nil {
				pp.Instruction = len(insns)
			}
		}
		out = append(out, pp)
	}
	if len(out) == 0 {
		return nil, errors.New("nothing attached to the client cgroup")
	}
	return out, nil
}

// pinThreads sets the CPU affinity of every thread of this process; threads
// created later inherit it from their creator. cpus nil means all CPUs.
func pinThreads(cpus []int) error {
	var set unix.CPUSet
	if cpus == nil {
		for i := range 1024 {
			set.Set(i)
		}
	} else {
		for _, c := range cpus {
			set.Set(c)
		}
	}
	entries, err := os.ReadDir(filepath.Join("/proc/self/task"))
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
