//go:build linux

package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/test/kerneltest"
)

// decoyPolicy is n rules on decoy executables; variant changes every rule's
// action so two variants differ everywhere.
func decoyPolicy(n, variant int, decoys []string) *engine.Policy {
	p := &engine.Policy{Default: engine.ActionAllow, Mode: engine.ModeEnforce, Rules: make([]engine.Rule, 0, n)}
	for i := range n {
		p.Rules = append(p.Rules, decoyRule(i, decoys[i], variant))
	}
	return p
}

// decoyRule is rule i of a large policy: its action turns with i (and
// variant), and every second rule has a destination list of its own so the
// destination trie grows with the policy.
func decoyRule(i int, exe string, variant int) engine.Rule {
	actions := []engine.Action{engine.ActionDeny, engine.ActionAllow, engine.ActionLocalOnly}
	r := engine.Rule{Name: fmt.Sprintf("r%06d", i), Selector: engine.Selector{Exe: exe}, Action: actions[(i+variant)%3]}
	if i%2 == 0 {
		k := i / 2
		pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(k >> 8), byte(k), 0}), 24)
		r.Deny = []engine.Dest{{Prefix: pfx, PortLo: 443, PortHi: 443, Proto: engine.ProtoTCP}}
	}
	return r
}

func timeIt(reps int, f func(i int) error) ([]float64, error) {
	var ms []float64
	for i := range reps {
		t0 := time.Now()
		if err := f(i); err != nil {
			return ms, err
		}
		ms = append(ms, float64(time.Since(t0))/1e6)
	}
	return ms, nil
}

// applySection times putting a large policy in force: in-process for
// exewall (YAML parse, validation, backend Apply and persisting reported
// apart), nft -f and iptables-restore for the same rule count.
func (b *bench) applySection() error {
	n := b.sizes().apply
	reps := 7
	if b.o.quick {
		reps = 3
	}
	fmt.Fprintf(os.Stderr, "bench: apply section (%s rules, %d runs each)\n", count(n), reps)
	ctx := context.Background()
	pA, pB := decoyPolicy(n, 0, b.decoys), decoyPolicy(n, 1, b.decoys)
	dataA, err := engine.Marshal(pA)
	if err != nil {
		return err
	}
	add := func(eng, what string, rules int, ms []float64, note string) {
		b.rep.addApply(ApplyResult{Engine: eng, What: what, Rules: rules, Ms: ms, Note: note})
	}

	ms, err := timeIt(reps, func(int) error { _, err := engine.Parse(dataA); return err })
	if err != nil {
		return err
	}
	add(engExewall, "YAML parse (engine.Parse, strict)", n, ms, fmt.Sprintf("%s KiB file", count(len(dataA)/1024)))

	applyCg := filepath.Join(b.base, "apply")
	if err := b.cl.create("cgroup "+applyCg, func() error { return kerneltest.RemoveCgroup(applyCg) }, func() error { return os.Mkdir(applyCg, 0o755) }); err != nil {
		return err
	}
	var fresh []float64
	for i := range reps {
		mark := b.cl.mark()
		be, err := b.newBackend(applyCg, fmt.Sprintf("apply-fresh-%d", i))
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := be.Apply(ctx, pA); err != nil {
			b.cl.release(mark)
			return err
		}
		fresh = append(fresh, float64(time.Since(t0))/1e6)
		if err := b.cl.release(mark); err != nil {
			return err
		}
	}
	add(engExewall, "apply: validated policy to in force, fresh backend (includes attach)", n, fresh, "linux.Backend.Apply: resolve exes, fill maps, attach")

	mark := b.cl.mark()
	be, err := b.newBackend(applyCg, "apply-replace")
	if err != nil {
		return err
	}
	// The backend is the kernel resolver the daemon validates with.
	ms, err = timeIt(reps, func(int) error { return engine.Validate(pA, be) })
	if err != nil {
		b.cl.release(mark)
		return err
	}
	add(engExewall, "validate (engine.Validate, kernel resolver)", n, ms, "what the daemon runs before Apply")
	if err := be.Apply(ctx, pA); err != nil {
		b.cl.release(mark)
		return err
	}
	ms, err = timeIt(reps, func(i int) error {
		if i%2 == 0 {
			return be.Apply(ctx, pB)
		}
		return be.Apply(ctx, pA)
	})
	if err != nil {
		b.cl.release(mark)
		return err
	}
	add(engExewall, "apply: validated policy to in force, replacing another policy", n, ms, "every rule's action differs")
	if top, err := b.pprofApply(func(i int) error {
		if i%2 == 0 {
			return be.Apply(ctx, pB)
		}
		return be.Apply(ctx, pA)
	}); err != nil {
		b.rep.note("pprof of Apply unavailable: %v", err)
	} else {
		b.rep.ApplyProfile = top
	}

	// One rule changed, in-process: what the CLI figures spend in the backend.
	for _, size := range []int{100, n} {
		base := decoyPolicy(size, 0, b.decoys)
		changed := base.Clone()
		changed.Rules[size/2].Action = engine.ActionAllow
		if base.Rules[size/2].Action == engine.ActionAllow {
			changed.Rules[size/2].Action = engine.ActionDeny
		}
		if err := be.Apply(ctx, base); err != nil {
			b.cl.release(mark)
			return err
		}
		ms, err = timeIt(reps, func(i int) error {
			if i%2 == 0 {
				return be.Apply(ctx, changed)
			}
			return be.Apply(ctx, base)
		})
		if err != nil {
			b.cl.release(mark)
			return err
		}
		add(engExewall, "apply: one rule changed (in-process Apply of the whole policy)", size, ms, "")
	}
	if err := b.cl.release(mark); err != nil {
		return err
	}

	// Persisting: the daemon edits the file keeping comments, then writes it
	// atomically (fsync, rename, fsync of the directory).
	path := filepath.Join(b.tmp, "persist.yaml")
	if err := os.WriteFile(path, dataA, 0o644); err != nil {
		return err
	}
	var edited []byte
	ms, err = timeIt(reps, func(i int) error {
		p := pB
		if i%2 == 1 {
			p = pA
		}
		var err error
		edited, _, err = engine.EditPolicyFile(dataA, p)
		return err
	})
	if err != nil {
		return err
	}
	add(engExewall, "persist: engine.EditPolicyFile (comment-keeping edit)", n, ms, "")
	ms, err = timeIt(reps, func(int) error { return engine.WriteFileAtomic(path, edited) })
	if err != nil {
		return err
	}
	add(engExewall, "persist: engine.WriteFileAtomic (fsync + rename)", n, ms, "")

	// nftables.
	nftFile, err := b.writeRuleFile(fmt.Sprintf("nft-apply-%d.nft", n), b.nftRuleset(n))
	if err != nil {
		return err
	}
	var nftMs, nftOne []float64
	for range reps {
		mark := b.cl.mark()
		var d time.Duration
		if err := b.cl.create("nftables table", nftRemove, func() error {
			var err error
			d, _, err = runTool(ctx, nil, "nft", "-f", nftFile)
			return err
		}); err != nil {
			b.cl.release(mark)
			return err
		}
		nftMs = append(nftMs, float64(d)/1e6)
		d, _, err = runTool(ctx, nil, "nft", "add", "rule", "inet", nftTable, "out", "meta", "skuid", "199999", "drop")
		if err != nil {
			b.cl.release(mark)
			return err
		}
		nftOne = append(nftOne, float64(d)/1e6)
		if err := b.cl.release(mark); err != nil {
			return err
		}
	}
	add(engNftables, "nft -f (new table with all rules)", n, nftMs, "")
	add(engNftables, "one rule change: nft add rule", n, nftOne, "on the table above")

	// iptables.
	filterExisted := filterTableExists()
	iptFile, err := b.writeRuleFile(fmt.Sprintf("ipt-apply-%d.rules", n), iptRules(n))
	if err != nil {
		return err
	}
	var iptMs, iptOne []float64
	for range reps {
		mark := b.cl.mark()
		var d time.Duration
		if err := b.cl.create("iptables chain", func() error { return iptRemove(!filterExisted) }, func() error {
			var err error
			d, _, err = runTool(ctx, nil, "iptables-restore", "--noflush", iptFile)
			return err
		}); err != nil {
			b.cl.release(mark)
			return err
		}
		iptMs = append(iptMs, float64(d)/1e6)
		d, _, err = runTool(ctx, nil, "iptables", "-A", iptChain, "-m", "owner", "--uid-owner", "199999", "-j", "DROP")
		if err != nil {
			b.cl.release(mark)
			return err
		}
		iptOne = append(iptOne, float64(d)/1e6)
		if err := b.cl.release(mark); err != nil {
			return err
		}
	}
	add(engIptables, "iptables-restore --noflush (new chain with all rules)", n, iptMs, b.rep.Machine.Iptables)
	add(engIptables, "one rule change: iptables -A", n, iptOne, "on the chain above")
	return nil
}

// pprofApply runs apply under the Go CPU profiler for about two seconds and
// returns the top of `go tool pprof -top -cum`: where a replacing Apply of
// the apply section's policy spends its time (kernel time inside a syscall
// is charged to the syscall's caller).
func (b *bench) pprofApply(apply func(i int) error) ([]string, error) {
	path := filepath.Join(b.tmp, "apply.pprof")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	start := time.Now()
	runs := 0
	for ; time.Since(start) < 2*time.Second; runs++ {
		if err := apply(runs); err != nil {
			pprof.StopCPUProfile()
			f.Close()
			return nil, err
		}
	}
	pprof.StopCPUProfile()
	f.Close()
	self, _ := os.Executable()
	out, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=28", self, path).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof: %v: %s", err, out)
	}
	lines := []string{fmt.Sprintf("%d replacing Applies of %s rules in %v", runs, count(b.sizes().apply), time.Since(start).Round(time.Millisecond))}
	keep := false
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "flat ") {
			keep = true
		}
		if strings.HasPrefix(l, "Duration:") {
			lines = append(lines, l+" (samples < duration: the rest is off-CPU, e.g. sleeping or waiting in the kernel)")
		}
		if keep && strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines, nil
}
