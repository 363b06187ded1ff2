//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

var guardAttach = []struct {
	name  string
	at    ebpf.AttachType
	added bool
}{
	{"connect4", ebpf.AttachCGroupInet4Connect, false},
	{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, false},
	{"sock_create", ebpf.AttachCGroupInetSockCreate, false},
	{"setsockopt", ebpf.AttachCGroupSetsockopt, true},
	{"egress", ebpf.AttachCGroupInetEgress, true},
	{"post_bind4", ebpf.AttachCGroupInet4PostBind, true},
}

// guardSection loads exewall with the smallest benchmark policy and reads
// the run time of every program attached to the client's cgroup while the
// client connects (TCP) or sends (UDP).
func (b *bench) guardSection() error {
	p := b.benchPolicy(b.sizes().exewall[0], b.decoys)
	mark := b.cl.mark()
	defer b.cl.release(mark)
	be, err := b.newBackend(b.clientCg, "guard")
	if err != nil {
		return err
	}
	if err := be.Apply(context.Background(), p); err != nil {
		return err
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fmt.Errorf("enable bpf stats: %w", err)
	}
	defer stats.Close()
	for _, op := range []string{opTCP, opUDP, opSockopt} {
		costs, err := b.hookCosts(op, "exewall")
		if err != nil {
			return err
		}
		b.rep.Guard = append(b.rep.Guard, costs...)
	}
	if err := b.cl.release(mark); err != nil {
		return err
	}
	// exewall without the guard hooks (the backend's own switch for
	// them): the wall-clock difference is what the guard costs a user.
	os.Setenv("EXEWALL_TEST_DISABLE", "guard")
	be, err = b.newBackend(b.clientCg, "guard-off")
	os.Unsetenv("EXEWALL_TEST_DISABLE")
	if err != nil {
		return err
	}
	if err := be.Apply(context.Background(), p); err != nil {
		return err
	}
	for _, op := range []string{opTCP, opUDP, opSockopt} {
		costs, err := b.hookCosts(op, noGuard)
		if err != nil {
			return err
		}
		b.rep.Guard = append(b.rep.Guard, costs...)
	}
	if err := b.cl.release(mark); err != nil {
		return err
	}
	// The floor, in the same run: an empty program at each hook (what
	// bpf_stats charges for a run that does nothing).
	for _, h := range guardAttach {
		if err := b.emptyAt(b.clientCg, h.at); err != nil {
			return err
		}
	}
	for _, op := range []string{opTCP, opUDP, opSockopt} {
		costs, err := b.hookCosts(op, "empty programs")
		if err != nil {
			return err
		}
		b.rep.Guard = append(b.rep.Guard, costs...)
	}
	return nil
}

// emptyAt attaches a program that only returns "allow" at hook at on
// cgroup cg with an unpinned link (it detaches when closed, or when the
// benchmark dies), removed by the cleaner.
func (b *bench) emptyAt(cg string, at ebpf.AttachType) error {
	typ := map[ebpf.AttachType]ebpf.ProgramType{ebpf.AttachCGroupInet4Connect: ebpf.CGroupSockAddr, ebpf.AttachCGroupUDP4Sendmsg: ebpf.CGroupSockAddr,
		ebpf.AttachCGroupInetSockCreate: ebpf.CGroupSock, ebpf.AttachCGroupSetsockopt: ebpf.CGroupSockopt,
		ebpf.AttachCGroupInetEgress: ebpf.CGroupSKB, ebpf.AttachCGroupInet4PostBind: ebpf.CGroupSock}[at]
	_, err := b.attachProgram("empty bpf program", cg, &ebpf.ProgramSpec{Name: "bench_empty", Type: typ, AttachType: at, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}})
	return err
}

func (b *bench) hookCosts(op, what string) ([]HookCost, error) {
	cgfd, err := os.Open(b.clientCg)
	if err != nil {
		return nil, err
	}
	defer cgfd.Close()
	type prog struct {
		hook  string
		added bool
		p     *ebpf.Program
		st    *ebpf.ProgramStats
	}
	var progs []prog
	for _, h := range guardAttach {
		q, err := link.QueryPrograms(link.QueryOptions{Target: int(cgfd.Fd()), Attach: h.at})
		if err != nil {
			continue
		}
		for _, ap := range q.Programs {
			p, err := ebpf.NewProgramFromID(ap.ID)
			if err != nil {
				return nil, err
			}
			defer p.Close()
			st, err := p.Stats()
			if err != nil {
				return nil, err
			}
			progs = append(progs, prog{h.name, h.added, p, st})
		}
	}
	j := job{Op: "tcp", Port: b.tcpPort, Batch: 16, Warmup: 200, Budget: time.Second, MaxOps: 1 << 20, CPU: b.ncpu - 1}
	switch op {
	case opUDP:
		j.Op, j.Port, j.Warmup = "udp", b.udpPort, 2000
	case opSockopt:
		j.Op, j.Warmup = "sockopt", 2000
	}
	res, err := b.runClient(b.client, b.clientCg, j, time.Minute)
	if err != nil {
		return nil, err
	}
	ops := float64(res.Ops + j.Warmup)
	out := []HookCost{{Op: op, What: what, Hook: wallClock, NsPerOp: res.MedianNs}}
	for _, pr := range progs {
		st, err := pr.p.Stats()
		if err != nil {
			return nil, err
		}
		runs := st.RunCount - pr.st.RunCount
		c := HookCost{Op: op, What: what, Hook: pr.hook, Added: pr.added, RunsPerOp: float64(runs) / ops,
			NsPerOp: float64(st.Runtime-pr.st.Runtime) / ops}
		if runs > 0 {
			c.NsPerRun = float64(st.Runtime-pr.st.Runtime) / float64(runs)
		}
		out = append(out, c)
	}
	return out, nil
}
