//go:build linux

package main

import (
	"context"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/linux"
)

// engineSetup is one column of the connect-path comparison: up puts the
// engine in force (registering its removal with the cleaner), and the
// cleaner's release after the round's measurements takes it out again, so
// only the engine being measured is ever in the kernel.
type engineSetup struct {
	engine string
	rules  int
	up     func(round int) error
}

// benchPolicy is the exewall policy with n rules. The first names the client
// executable and decides with destination lists (so every measured connect
// and sendto goes through a destination lookup and is allowed by an entry);
// the others name distinct decoy executables, every second one with a
// destination list of its own so the destination trie grows with the policy.
func (b *bench) benchPolicy(n int, decoys []string) *engine.Policy {
	p := &engine.Policy{Default: engine.ActionAllow, Mode: engine.ModeEnforce, Rules: make([]engine.Rule, 0, n)}
	lo := netip.MustParsePrefix("127.0.0.1/32")
	p.Rules = append(p.Rules, engine.Rule{Name: "bench-client", Selector: engine.Selector{Exe: b.client}, Action: engine.ActionDeny,
		Allow: []engine.Dest{
			{Prefix: lo, PortLo: uint16(b.tcpPort), PortHi: uint16(b.tcpPort), Proto: engine.ProtoTCP},
			{Prefix: lo, PortLo: uint16(b.udpPort), PortHi: uint16(b.udpPort), Proto: engine.ProtoUDP},
		},
		Deny: []engine.Dest{{Prefix: netip.MustParsePrefix("127.0.0.0/8"), PortLo: 1, PortHi: 1023}},
	})
	actions := []engine.Action{engine.ActionDeny, engine.ActionAllow, engine.ActionLocalOnly}
	for i := 1; i < n; i++ {
		r := engine.Rule{Name: fmt.Sprintf("r%06d", i), Selector: engine.Selector{Exe: decoys[i-1]}, Action: actions[i%3]}
		if i%2 == 0 {
			k := i / 2
			pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(k >> 8), byte(k), 0}), 24)
			r.Deny = []engine.Dest{{Prefix: pfx, PortLo: 443, PortHi: 443, Proto: engine.ProtoTCP}}
		}
		p.Rules = append(p.Rules, r)
	}
	return p
}

// newBackend loads an exewall backend attached to cg, pinned below our pin
// directory; its removal is registered first.
func (b *bench) newBackend(cg, pinName string) (*linux.Backend, error) {
	pin := filepath.Join(b.pinBase, pinName)
	var be *linux.Backend
	err := b.cl.create("exewall backend "+pin, func() error {
		if be != nil {
			be.Close()
		}
		return linux.Reset(context.Background(), linux.Config{PinDir: pin})
	}, func() error {
		var err error
		be, err = linux.New(context.Background(), linux.Config{Cgroup: cg, PinDir: pin, DetachOnClose: true, WatchInterval: time.Hour})
		return err
	})
	return be, err
}

// allowAllPolicy is benchPolicy with the client named by no rule: it falls
// under the default, allow (issue 21's "allow-everything rule or default").
func (b *bench) allowAllPolicy(n int, decoys []string) *engine.Policy {
	p := b.benchPolicy(n, decoys)
	p.Rules[0].Exe = "/nonexistent-exewall-bench/client"
	return p
}

// wanted says whether the --engines filter keeps an engine.
func (b *bench) wanted(eng string) bool {
	if b.o.engines == "" {
		return true
	}
	for _, e := range strings.Split(b.o.engines, ",") {
		if strings.TrimSpace(e) == eng {
			return true
		}
	}
	return false
}

func (b *bench) connectPath() error {
	sz := b.sizes()
	var setups []engineSetup
	setups = append(setups, engineSetup{engine: engNone, up: func(int) error { return nil }})
	setups = append(setups, engineSetup{engine: engFloor, up: func(int) error { return b.floorUp(b.clientCg) }})
	for _, n := range sz.exewall {
		setups = append(setups, b.exewallSetup(engExewall, n, b.benchPolicy(n, b.decoys)))
	}
	for _, n := range []int{sz.exewall[0], slicesMax(sz.exewall)} {
		setups = append(setups, b.exewallSetup(engExewallAllow, n, b.allowAllPolicy(n, b.decoys)))
	}
	filterExisted := filterTableExists()
	for _, n := range sz.netfilter {
		nftFile, err := b.writeRuleFile(fmt.Sprintf("nft-%d.nft", n), b.nftRuleset(n))
		if err != nil {
			return err
		}
		iptFile, err := b.writeRuleFile(fmt.Sprintf("ipt-%d.rules", n), iptRules(n))
		if err != nil {
			return err
		}
		setups = append(setups, engineSetup{engine: engNftables, rules: n, up: func(int) error {
			return b.cl.create("nftables table", nftRemove, func() error {
				d, _, err := runTool(context.Background(), nil, "nft", "-f", nftFile)
				b.recordSetup(engNftables, n, "connect rounds: nft -f into an empty table", d)
				return err
			})
		}})
		setups = append(setups, engineSetup{engine: engIptables, rules: n, up: func(int) error {
			return b.cl.create("iptables chain", func() error { return iptRemove(!filterExisted) }, func() error {
				d, _, err := runTool(context.Background(), nil, "iptables-restore", "--noflush", iptFile)
				b.recordSetup(engIptables, n, "connect rounds: iptables-restore --noflush", d)
				return err
			})
		}})
	}
	if b.o.withOpenSnitch {
		if s, ok := b.openSnitchSetup(); ok {
			setups = append(setups, s)
		}
	}
	kept := setups[:0]
	for _, s := range setups {
		// The baseline is always measured: every ratio is against it.
		if s.engine == engNone || b.wanted(s.engine) {
			kept = append(kept, s)
		}
	}
	setups = kept

	for _, s := range setups {
		for _, op := range []string{opTCP, opUDP} {
			b.rep.Connect = append(b.rep.Connect, ConnectResult{Engine: s.engine, Rules: s.rules, Op: op})
		}
	}
	// The client is pinned to the last CPU; keep this process (the TCP
	// acceptor, the backends' goroutines) and the tools it runs off it.
	if b.ncpu > 1 {
		if err := pinThreads(seq(b.ncpu - 1)); err != nil {
			b.rep.note("could not keep the orchestrator off the client's CPU: %v", err)
		}
		defer pinThreads(nil)
	}
	finished := false
	defer func() {
		if !finished {
			b.rep.finishConnect() // what was measured before the error
		}
	}()
	rng := rand.New(rand.NewSource(b.o.seed))
	for round := 0; round < b.o.rounds; round++ {
		l := loadavg()
		b.rep.Machine.LoadMax1 = max(b.rep.Machine.LoadMax1, l[0])
		fmt.Fprintf(os.Stderr, "bench: connect round %d/%d (load %.2f)\n", round+1, b.o.rounds, l[0])
		for _, s := range shuffled(rng, setups) {
			mark := b.cl.mark()
			if err := s.up(round); err != nil {
				b.cl.release(mark)
				return fmt.Errorf("%s with %d rules: %w", s.engine, s.rules, err)
			}
			ops := []string{opTCP, opUDP}
			if rng.Intn(2) == 1 {
				ops = []string{opUDP, opTCP}
			}
			for _, op := range ops {
				if err := b.measureOnce(s, op); err != nil {
					b.cl.release(mark)
					return err
				}
			}
			if err := b.cl.release(mark); err != nil {
				return err
			}
		}
	}
	b.rep.finishConnect()
	finished = true
	return b.profile(setups)
}

// exewallSetup is an exewall column: a fresh backend with policy p.
func (b *bench) exewallSetup(eng string, n int, p *engine.Policy) engineSetup {
	return engineSetup{engine: eng, rules: n, up: func(round int) error {
		t0 := time.Now()
		be, err := b.newBackend(b.clientCg, fmt.Sprintf("connect-%s-%d-%d", eng, round, n))
		if err != nil {
			return err
		}
		t1 := time.Now()
		if err := be.Apply(context.Background(), p); err != nil {
			return fmt.Errorf("apply %d rules: %w", n, err)
		}
		if eng == engExewall {
			b.recordSetup(engExewall, n, "connect rounds: linux.New (load, no attach)", t1.Sub(t0))
			b.recordSetup(engExewall, n, "connect rounds: first Apply (resolve, fill maps, attach)", time.Since(t1))
		}
		return nil
	}}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// profile reads the kernel's run time of the attached programs for the
// empty program and exewall at its smallest and largest rule counts.
func (b *bench) profile(setups []engineSetup) error {
	sz := b.sizes()
	for _, s := range setups {
		if !(s.engine == engFloor || (s.engine == engExewall || s.engine == engExewallAllow) && (s.rules == sz.exewall[0] || s.rules == slicesMax(sz.exewall))) {
			continue
		}
		mark := b.cl.mark()
		if err := s.up(-1); err != nil {
			b.cl.release(mark)
			return err
		}
		for _, op := range []string{opTCP, opUDP} {
			pp, err := b.profileAttached(s.engine, s.rules, op)
			if err != nil {
				b.rep.note("bpf run-time profile of %s (%d rules, %s) unavailable: %v", s.engine, s.rules, op, err)
				continue
			}
			b.rep.Profile = append(b.rep.Profile, pp...)
		}
		if err := b.cl.release(mark); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) measureOnce(s engineSetup, op string) error {
	j := job{Port: b.tcpPort, Batch: 16, Warmup: 500, Budget: b.o.budget, MaxOps: 1 << 20, CPU: b.ncpu - 1}
	if op == opUDP {
		j.Op, j.Port, j.Warmup = "udp", b.udpPort, 5000
	} else {
		j.Op = "tcp"
	}
	res, err := b.runClient(b.client, b.clientCg, j, b.o.budget+60*time.Second)
	if err != nil {
		return fmt.Errorf("%s %d rules %s: %w", s.engine, s.rules, op, err)
	}
	c := b.rep.connect(s.engine, s.rules, op)
	c.RoundMedians = append(c.RoundMedians, res.MedianNs)
	c.RoundP99s = append(c.RoundP99s, res.P99Ns)
	c.Ops += res.Ops
	c.Errors += res.Errors
	if c.FirstError == "" {
		c.FirstError = res.FirstError
	}
	return nil
}

// recordSetup keeps the time an engine took to come up in a connect round:
// the same figures as the apply section, taken many more times.
func (b *bench) recordSetup(eng string, rules int, what string, d time.Duration) {
	for i := range b.rep.Apply {
		a := &b.rep.Apply[i]
		if a.Engine == eng && a.Rules == rules && a.What == what {
			a.Ms = append(a.Ms, float64(d)/1e6)
			a.Median, a.Min, a.Max = msStats(a.Ms)
			return
		}
	}
	b.rep.addApply(ApplyResult{Engine: eng, Rules: rules, What: what, Ms: []float64{float64(d) / 1e6}})
}
