//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/exewall/exewall/engine"
)

// Sync implements engine.Syncer: it compares what the kernel holds (links on
// the cgroup, pins, map contents of the active generation) with the desired
// policy, repairs every difference and reports it.
func (b *Backend) Sync(ctx context.Context, p *engine.Policy) ([]engine.Drift, error) {
	p = engine.WithEncryptedDNSDenied(p) // what Apply compiled
	b.mu.Lock()
	defer b.mu.Unlock()
	var drifts []engine.Drift
	report := func(repaired bool, format string, args ...any) {
		drifts = append(drifts, engine.Drift{What: fmt.Sprintf(format, args...), Repaired: repaired})
	}

	var detached []string
	for _, h := range hooks {
		l, ok := b.links[h.name]
		if !ok {
			continue // not attached yet (no policy applied): nothing to compare
		}
		if !b.linkOnOurCgroup(l) {
			// Detached behind our back (bpftool link detach): drop the
			// severed link; all of them are re-attached together below.
			l.Unpin()
			l.Close()
			delete(b.links, h.name)
			os.Remove(b.linkPin(h))
			detached = append(detached, h.name)
			continue
		}
		if !b.linkRunsOurs(l, h) {
			// Someone (another daemon, bpftool) swapped the program.
			err := l.Update(h.prog(&b.objs))
			report(err == nil, "%s link runs a program that is not this daemon's", h.name)
		}
		if _, err := os.Stat(b.linkPin(h)); errors.Is(err, os.ErrNotExist) {
			err := repin(l, b.linkPin(h))
			report(err == nil, "%s link pin %s was removed", h.name, b.linkPin(h))
		}
	}
	if len(detached) > 0 {
		err := b.attach()
		for _, name := range detached {
			report(err == nil, "%s program was detached from %s", name, b.cgroupPath)
		}
		if err != nil {
			return drifts, err
		}
	}

	// Map pins removed (rm -r /sys/fs/bpf/exewall): the maps live on in our
	// fds; pin them again so the next daemon adopts them.
	for name, m := range b.mapsByName() {
		path := filepath.Join(b.cfg.PinDir, name)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			os.MkdirAll(b.cfg.PinDir, 0o700)
			err := repin(m, path)
			report(err == nil, "map pin %s was removed", path)
		}
	}
	// A policy-sized map's slot emptied or swapped (bpftool map delete on
	// the pinned array): the programs would read an empty map.
	for name, m := range b.sized.byName() {
		if *m == nil || (*m).inner == nil {
			continue
		}
		if swapped, err := (*m).reinstate(); swapped || err != nil {
			report(err == nil, "%s map in force was removed or replaced in the kernel", name)
		}
	}
	// A counters chunk taken out of (or swapped in) its array: the rules
	// of its slots would count nothing from then on.
	if b.counters != nil {
		put, err := b.counters.reinstate()
		for _, i := range put {
			report(true, "counters chunk %d (slots %d-%d) was removed or replaced in the kernel", i, i*counterChunk, (i+1)*counterChunk-1)
		}
		if err != nil {
			report(false, "counters chunks: %v", err)
		}
	}
	if b.execLink != nil {
		if _, err := os.Stat(b.execPin()); errors.Is(err, os.ErrNotExist) {
			err := repin(b.execLink, b.execPin())
			report(err == nil, "exec hook pin %s was removed", b.execPin())
		}
	}
	if m := b.exec.ExeNames; m != nil {
		path := filepath.Join(b.cfg.PinDir, exeNamesPin)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			err := repin(m, path)
			report(err == nil, "map pin %s was removed", path)
		}
	}
	for name, l := range b.identLinks {
		if _, err := os.Stat(b.identPin(name)); errors.Is(err, os.ErrNotExist) {
			err := repin(l, b.identPin(name))
			report(err == nil, "%s hook pin %s was removed", name, b.identPin(name))
		}
	}

	b.syncProgPins(report)
	b.syncGuard(report)
	b.syncDNS(report)
	b.syncInbound(report)
	if b.policy == nil {
		return drifts, nil
	}
	desired := p
	if desired == nil {
		desired = b.policy
	}
	gen, err := b.activeGen()
	if err != nil {
		return drifts, err
	}
	g := b.gens[gen]
	var cfg datapathConfig
	if err := b.objs.Configs.Lookup(gen, &cfg); err != nil {
		return drifts, err
	}
	stale := false
	exact := false
	if g != nil && cfg == g.config {
		// Nothing tampered, the usual answer, found without building the
		// maps of both sides.
		if exact, err = b.holdsExactly(g, b.policy, gen); err != nil {
			return drifts, err
		}
	}
	switch {
	case exact:
	case g == nil:
		stale = true
		report(false, "active policy generation unknown")
	default:
		want := g.flat(b.policy, b.slotOf, gen)
		if g.rules != nil {
			b.addBound(want, g, gen) // DNS name bindings (dns_bind.go)
		}
		have, err := b.scanGen(gen)
		if err != nil {
			return drifts, err
		}
		for _, changed := range []bool{
			diffMap(&drifts, "executable rule", want.exe, have.exe),
			diffMap(&drifts, "cgroup rule", want.cgroups, have.cgroups),
			diffMap(&drifts, "user rule", want.uids, have.uids),
			diffMap(&drifts, "group rule", want.gids, have.gids),
			diffMap(&drifts, "destination", want.dests, have.dests),
			diffMap(&drifts, "name binding", want.binds, have.binds),
		} {
			stale = stale || changed
		}
		if cfg != want.config {
			stale = true
			report(false, "policy settings (default/mode) were changed in the kernel")
		}
	}
	if !desired.Equal(b.policy) {
		stale = true
		report(false, "policy in force differs from the desired policy")
	}
	if stale {
		ids, err := b.resolve(desired)
		if err != nil {
			return drifts, err
		}
		// What either generation holds is in doubt now: the repair writes
		// the idle one after scanning it, and the next apply scans the
		// drifted one (an apply otherwise writes only what it knows differs).
		b.gens = [2]*generation{}
		if err := b.applyLocked(desired.Clone(), ids); err != nil {
			return drifts, err
		}
		for i := range drifts {
			drifts[i].Repaired = true
		}
	}
	// An apply writes only what it knows differs in the idle generation,
	// so an entry changed there behind our back would come into force with
	// the next apply. Unless it holds exactly what we know it holds, it is
	// forgotten: the next apply scans it and writes every difference (at
	// 100,000 rules a scan costs that apply ~0.5 s and 150 MB of garbage,
	// which is why it is not forgotten every time).
	if cur, err := b.activeGen(); err == nil && b.gens[cur^1] != nil {
		if exact, err := b.holdsExactly(b.gens[cur^1], nil, cur^1); err != nil || !exact {
			b.gens[cur^1] = nil
		}
	}
	b.syncSweep(report, stale, gen)
	return drifts, nil
}

// diffMap reports entries missing, extra or changed; it returns whether any.
func diffMap[K comparable, V comparable](drifts *[]engine.Drift, what string, want, have map[K]V) bool {
	found := false
	for k, v := range want {
		if hv, ok := have[k]; !ok {
			*drifts = append(*drifts, engine.Drift{What: fmt.Sprintf("%s entry was deleted from the kernel map", what)})
			found = true
		} else if hv != v {
			*drifts = append(*drifts, engine.Drift{What: fmt.Sprintf("%s entry was modified in the kernel map", what)})
			found = true
		}
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			*drifts = append(*drifts, engine.Drift{What: fmt.Sprintf("%s entry was added to the kernel map", what)})
			found = true
		}
	}
	return found
}

// listAttached lists every program attached to the cgroup at the hooks
// exewall uses, ours and others' (systemd's, Cilium's), for doctor.
func listAttached(cgroup string) ([]string, error) {
	f, err := os.Open(cgroup)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	for _, h := range hooks {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: h.attach})
		if err != nil {
			return nil, fmt.Errorf("query %s programs: %w", h.name, err)
		}
		for _, ap := range res.Programs {
			name := "?"
			if p, err := ebpf.NewProgramFromID(ap.ID); err == nil {
				if info, err := p.Info(); err == nil {
					name = info.Name
				}
				p.Close()
			}
			out = append(out, fmt.Sprintf("%s: id %d %s", h.name, ap.ID, name))
		}
	}
	return out, nil
}

type pinner interface {
	Pin(string) error
	Unpin() error
}

// repin pins an object again whose pin someone removed: the library thinks
// it is still pinned there and would do nothing, so forget that first.
func repin(p pinner, path string) error {
	p.Unpin()
	return p.Pin(path)
}

// linkRunsOurs reports whether the link still runs this backend's program.
func (b *Backend) linkRunsOurs(l link.Link, h hook) bool {
	info, err := l.Info()
	if err != nil {
		return true // cannot tell: do not report drift on a guess
	}
	pinfo, err := h.prog(&b.objs).Info()
	if err != nil {
		return true
	}
	id, ok := pinfo.ID()
	return !ok || info.Program == id
}
