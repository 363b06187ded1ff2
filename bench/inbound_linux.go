//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/test/kerneltest"
)

// The inbound section: three receivers (inRecvMain) on loopback, one in a
// cgroup exewall is not attached to ("none"), two in the client cgroup: one
// under a rule that restricts nothing inbound ("open": the ingress program's
// fast path), one under a deny rule whose "in" entries allow its two ports
// ("restricted": every packet to them goes through the destination lookup
// and is allowed). The benchmark process (outside every exewall cgroup)
// sends datagrams and opens connections to each in turn, round after round.

const inRecvRole = "inrecv"

const (
	inDatagrams = 200000
	inConns     = 10000
)

// inRecvMain is a receiver: a UDP socket that reads every datagram and a
// TCP listener that accepts and closes, on 127.0.0.1. It prints both ports,
// then answers each line on stdin with "datagrams connections cpu_ns".
func inRecvMain() int {
	debug.SetGCPercent(-1)
	u, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "inrecv:", err)
		return 1
	}
	unix.SetsockoptInt(u, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
	lo := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	l, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		err = unix.Bind(u, lo)
	}
	if err == nil {
		err = unix.Bind(l, lo)
	}
	if err == nil {
		err = unix.Listen(l, 4096)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "inrecv:", err)
		return 1
	}
	usa, _ := unix.Getsockname(u)
	lsa, _ := unix.Getsockname(l)
	fmt.Printf("%d %d\n", usa.(*unix.SockaddrInet4).Port, lsa.(*unix.SockaddrInet4).Port)
	var dgrams, conns atomic.Int64
	go func() {
		runtime.LockOSThread()
		buf := make([]byte, 64)
		for {
			if _, _, err := unix.Recvfrom(u, buf, 0); err == nil {
				dgrams.Add(1)
			}
		}
	}()
	go func() {
		runtime.LockOSThread()
		for {
			if fd, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC); err == nil {
				unix.Close(fd)
				conns.Add(1)
			}
		}
	}()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Printf("%d %d %d\n", dgrams.Load(), conns.Load(), cpuNs(unix.RUSAGE_SELF))
	}
	return 0
}

func cpuNs(who int) int64 {
	var ru unix.Rusage
	unix.Getrusage(who, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

type inRecv struct {
	what     string
	in       io.Writer
	out      *bufio.Reader
	udp, tcp int
}

func (b *bench) startInRecv(what, exe, cg string) (*inRecv, error) {
	r := &inRecv{what: what}
	var cmd *exec.Cmd
	err := b.cl.create("inbound receiver "+what, func() error {
		if cmd != nil && cmd.Process != nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		return nil
	}, func() error {
		cgfd, err := os.Open(cg)
		if err != nil {
			return err
		}
		defer cgfd.Close()
		cmd = exec.Command(exe)
		cmd.Env = append(os.Environ(), roleEnv+"="+inRecvRole)
		cmd.SysProcAttr = &unix.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
		cmd.Stderr = os.Stderr
		if r.in, err = cmd.StdinPipe(); err != nil {
			return err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		r.out = bufio.NewReader(out)
		line, err := r.out.ReadString('\n')
		if err != nil {
			return fmt.Errorf("receiver %s: %w", what, err)
		}
		_, err = fmt.Sscanf(line, "%d %d", &r.udp, &r.tcp)
		return err
	})
	return r, err
}

func (r *inRecv) stat() (dgrams, conns, cpu int64, err error) {
	fmt.Fprintln(r.in)
	line, err := r.out.ReadString('\n')
	if err != nil {
		return 0, 0, 0, err
	}
	_, err = fmt.Sscanf(line, "%d %d %d", &dgrams, &conns, &cpu)
	return
}

// settle waits until the receiver's counts stop moving (it has read what
// was queued) and returns its last stat.
func (r *inRecv) settle() (dgrams, conns, cpu int64, err error) {
	var pd, pc int64 = -1, -1
	for range 200 {
		if dgrams, conns, cpu, err = r.stat(); err != nil || dgrams == pd && conns == pc {
			return
		}
		pd, pc = dgrams, conns
		time.Sleep(20 * time.Millisecond)
	}
	return
}

// inboundPolicy is benchPolicy with its first rule replaced by the
// restricted receiver's and a rule for the open receiver added.
func (b *bench) inboundPolicy(n int, open, restricted string, udpPort, tcpPort int) *engine.Policy {
	p := b.benchPolicy(n, b.decoys)
	lo := netip.MustParsePrefix("127.0.0.0/8")
	p.Rules[0] = engine.Rule{Name: "in-restricted", Selector: engine.Selector{Exe: restricted}, Action: engine.ActionDeny,
		Allow: []engine.Dest{
			{Prefix: lo, PortLo: uint16(udpPort), PortHi: uint16(udpPort), Proto: engine.ProtoUDP, Dir: engine.DirIn},
			{Prefix: lo, PortLo: uint16(tcpPort), PortHi: uint16(tcpPort), Proto: engine.ProtoTCP, Dir: engine.DirIn},
		}}
	p.Rules = append(p.Rules, engine.Rule{Name: "in-open", Selector: engine.Selector{Exe: open}, Action: engine.ActionAllow})
	return p
}

func (b *bench) inboundSection() error {
	n := slicesMax(b.sizes().exewall)
	mark := b.cl.mark()
	defer b.cl.release(mark)
	open, restricted := filepath.Join(b.tmp, "in-open"), filepath.Join(b.tmp, "in-restricted")
	for _, exe := range []string{open, restricted} {
		if err := kerneltest.CopyFile(b.client, exe); err != nil {
			return err
		}
	}
	noneCg := filepath.Join(b.base, "inbound-none")
	if err := b.cl.create("cgroup "+noneCg, func() error { return kerneltest.RemoveCgroup(noneCg) }, func() error { return os.Mkdir(noneCg, 0o755) }); err != nil {
		return err
	}
	be, err := b.newBackend(b.clientCg, "inbound")
	if err != nil {
		return err
	}
	// Receivers start after the first apply: their sockets' creators are
	// recorded; the second apply names their ports.
	if err := be.Apply(context.Background(), b.inboundPolicy(n, open, restricted, 0, 0)); err != nil {
		return err
	}
	var recvs []*inRecv
	for _, v := range []struct{ what, exe, cg string }{{"none", b.client, noneCg}, {"open", open, b.clientCg}, {"restricted", restricted, b.clientCg}} {
		r, err := b.startInRecv(v.what, v.exe, v.cg)
		if err != nil {
			return err
		}
		recvs = append(recvs, r)
	}
	if err := be.Apply(context.Background(), b.inboundPolicy(n, open, restricted, recvs[2].udp, recvs[2].tcp)); err != nil {
		return err
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fmt.Errorf("enable bpf stats: %w", err)
	}
	defer stats.Close()
	ingress, err := ingressProgs(b.clientCg)
	if err != nil {
		return err
	}
	defer func() {
		for _, p := range ingress {
			p.Close()
		}
	}()
	rounds := 5
	if b.o.quick {
		rounds = 1
	}
	samples := map[string][]InboundVariant{}
	for range rounds {
		for _, r := range recvs {
			v, err := measureInbound(r, ingress)
			if err != nil {
				return fmt.Errorf("receiver %s: %w", r.what, err)
			}
			samples[r.what] = append(samples[r.what], v)
		}
	}
	res := &InboundResult{Rules: n + 1, Rounds: rounds}
	for _, r := range recvs {
		res.Rows = append(res.Rows, medianVariant(samples[r.what]))
	}
	// The floor, after the rounds (it would add its own cost to them): an
	// empty program beside exewall's at the same hook, the same datagrams.
	floorMark := b.cl.mark()
	empty, err := b.emptyIngress(b.clientCg)
	if err != nil {
		return err
	}
	for i, r := range recvs[1:] {
		v, err := measureInbound(r, []*ebpf.Program{empty})
		if err != nil {
			return err
		}
		res.Rows[i+1].EmptyNsPerRun = v.UDPNsPerRun
	}
	if err := b.cl.release(floorMark); err != nil {
		return err
	}
	// Last, the same receivers under a policy of the same size that
	// restricts nothing inbound: the inbound hooks are then detached.
	if err := be.Apply(context.Background(), openInboundPolicy(b.inboundPolicy(n, open, restricted, recvs[2].udp, recvs[2].tcp))); err != nil {
		return err
	}
	if progs, err := ingressProgs(b.clientCg); err != nil || len(progs) != 0 {
		for _, p := range progs {
			p.Close()
		}
		return fmt.Errorf("ingress programs left attached under a policy restricting nothing inbound (%d, %v)", len(progs), err)
	}
	v, err := measureInbound(recvs[1], nil)
	if err != nil {
		return err
	}
	v.What = "open, hooks detached"
	res.Rows = append(res.Rows, v)
	b.rep.Inbound = res
	return nil
}

// openInboundPolicy is p with every rule accepting anyone: action allow,
// and deny entries limited to "out".
func openInboundPolicy(p *engine.Policy) *engine.Policy {
	for i := range p.Rules {
		r := &p.Rules[i]
		r.Action = engine.ActionAllow
		for j := range r.Deny {
			r.Deny[j].Dir = engine.DirOut
		}
	}
	return p
}

func ingressProgs(cg string) ([]*ebpf.Program, error) {
	f, err := os.Open(cg)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	q, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: ebpf.AttachCGroupInetIngress})
	if err != nil {
		return nil, fmt.Errorf("query ingress programs: %w", err)
	}
	var out []*ebpf.Program
	for _, ap := range q.Programs {
		p, err := ebpf.NewProgramFromID(ap.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// progRun sums the run count and run time of progs.
func progRun(progs []*ebpf.Program) (runs uint64, runtime time.Duration) {
	for _, p := range progs {
		if st, err := p.Stats(); err == nil {
			runs += st.RunCount
			runtime += st.Runtime
		}
	}
	return
}

func measureInbound(r *inRecv, ingress []*ebpf.Program) (InboundVariant, error) {
	v := InboundVariant{What: r.what, Datagrams: inDatagrams}
	d0, _, cpu0, err := r.settle()
	if err != nil {
		return v, err
	}
	runs0, rt0 := progRun(ingress)
	sender, err := blastUDP(r.udp, inDatagrams)
	if err != nil {
		return v, err
	}
	d1, _, cpu1, err := r.settle()
	if err != nil {
		return v, err
	}
	runs1, rt1 := progRun(ingress)
	v.Received = int(d1 - d0)
	v.CPUNsPerDg = float64(sender+cpu1-cpu0) / inDatagrams
	v.RecvNsPerDg = float64(cpu1-cpu0) / inDatagrams
	if runs1 > runs0 {
		v.UDPNsPerRun = float64(rt1-rt0) / float64(runs1-runs0)
	}

	_, c1, cpu2, err := r.stat()
	if err != nil {
		return v, err
	}
	t0 := time.Now()
	sender, err = connectLoop(r.tcp, inConns)
	if err != nil {
		return v, err
	}
	var cpu3 int64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		_, c, cpu, err := r.stat()
		if err != nil {
			return v, err
		}
		if cpu3 = cpu; c-c1 >= inConns {
			break
		}
	}
	v.ConnsPerSec = inConns / time.Since(t0).Seconds()
	v.CPUNsPerConn = float64(sender+cpu3-cpu2) / inConns
	runs2, rt2 := progRun(ingress)
	if runs2 > runs1 {
		v.TCPNsPerRun = float64(rt2-rt1) / float64(runs2-runs1)
		v.TCPRunsPerOp = float64(runs2-runs1) / inConns
	}
	return v, nil
}

// connectLoop opens and closes n connections to 127.0.0.1:port from a
// locked thread and returns that thread's CPU time (the handshake's receive
// path, ingress program included, runs in its context on loopback).
func connectLoop(port, n int) (int64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sa := loopback(port)
	t0 := cpuNs(unix.RUSAGE_THREAD)
	for range n {
		if e := tcpOnce(&sa); e != 0 {
			return 0, fmt.Errorf("connect: %w", e)
		}
	}
	return cpuNs(unix.RUSAGE_THREAD) - t0, nil
}

// blastUDP sends n datagrams to 127.0.0.1:port from a locked thread and
// returns that thread's CPU time (on loopback the receive path, ingress
// program included, runs in the sender's context).
func blastUDP(port, n int) (int64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	sa := loopback(port)
	t0 := cpuNs(unix.RUSAGE_THREAD)
	for range n {
		udpOnce(uintptr(fd), &sa)
	}
	return cpuNs(unix.RUSAGE_THREAD) - t0, nil
}

func medianVariant(vs []InboundVariant) InboundVariant {
	pick := func(f func(InboundVariant) float64) float64 {
		xs := make([]float64, len(vs))
		for i, v := range vs {
			xs[i] = f(v)
		}
		return median(xs)
	}
	out := vs[0]
	out.CPUNsPerDg = pick(func(v InboundVariant) float64 { return v.CPUNsPerDg })
	out.RecvNsPerDg = pick(func(v InboundVariant) float64 { return v.RecvNsPerDg })
	out.ConnsPerSec = pick(func(v InboundVariant) float64 { return v.ConnsPerSec })
	out.CPUNsPerConn = pick(func(v InboundVariant) float64 { return v.CPUNsPerConn })
	out.UDPNsPerRun = pick(func(v InboundVariant) float64 { return v.UDPNsPerRun })
	out.EmptyNsPerRun = pick(func(v InboundVariant) float64 { return v.EmptyNsPerRun })
	out.TCPNsPerRun = pick(func(v InboundVariant) float64 { return v.TCPNsPerRun })
	out.TCPRunsPerOp = pick(func(v InboundVariant) float64 { return v.TCPRunsPerOp })
	out.Received = int(pick(func(v InboundVariant) float64 { return float64(v.Received) }))
	return out
}

// emptyIngress attaches a program that only returns "pass" at cgroup
// ingress of cg, beside exewall's (multi-attach), removed by the cleaner.
func (b *bench) emptyIngress(cg string) (*ebpf.Program, error) {
	return b.attachProgram("empty ingress program", cg, &ebpf.ProgramSpec{Name: "bench_empty_in", Type: ebpf.CGroupSKB,
		AttachType: ebpf.AttachCGroupInetIngress, License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}})
}
