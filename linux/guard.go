//go:build linux

package linux

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// The guard hooks close paths the datapath's destination judgement cannot
// see (issue 13): source routes (cgroup/setsockopt refuses them to
// restricted programs, cgroup_skb/egress drops any packet that carries one
// from a restricted program's socket), echo requests a restricted program
// sends on a ping socket it was handed, and the creator of accepted sockets
// (post_bind: a server socket's creator is copied into storage the sockets
// it accepts inherit). They share the datapath's maps and are optional: a
// kernel that refuses them leaves the rest in force, and says so.
type guardHook struct {
	name   string
	attach ebpf.AttachType
	prog   func(*guardObjects) *ebpf.Program
}

var guardHooks = []guardHook{
	{"setsockopt", ebpf.AttachCGroupSetsockopt, func(o *guardObjects) *ebpf.Program { return o.ExewallSetsockopt }},
	{"egress", ebpf.AttachCGroupInetEgress, func(o *guardObjects) *ebpf.Program { return o.ExewallEgress }},
	{"post_bind4", ebpf.AttachCGroupInet4PostBind, func(o *guardObjects) *ebpf.Program { return o.ExewallBind4 }},
	{"post_bind6", ebpf.AttachCGroupInet6PostBind, func(o *guardObjects) *ebpf.Program { return o.ExewallBind6 }},
}

func (b *Backend) guardPin(name string) string {
	return filepath.Join(b.cfg.PinDir, "link_guard_"+name)
}

// loadGuard loads the guard programs; sock_heirs is pinned (an accepted
// socket's creator must outlive a daemon restart) and added to repl for the
// socket iterators.
func (b *Backend) loadGuard(repl map[string]*ebpf.Map) error {
	spec, err := loadGuard()
	if err != nil {
		return err
	}
	spec.Maps["sock_heirs"].Pinning = ebpf.PinByName
	opts := &ebpf.CollectionOptions{MapReplacements: onlyMaps(spec, repl), Maps: ebpf.MapOptions{PinPath: b.cfg.PinDir}, Cache: b.btf}
	if err := b.loadObjects("guard", _GuardBytes, spec, &b.guard, opts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return fmt.Errorf("load guard hooks: %+v", ve)
		}
		return fmt.Errorf("load guard hooks: %w", err)
	}
	repl["sock_heirs"] = b.guard.SockHeirs
	b.guardOK = true
	return nil
}

// attachGuard attaches (or adopts, replacing the program in place) the
// guard hooks on our cgroup, like attach does for the datapath's.
func (b *Backend) attachGuard() error {
	if !b.guardOK {
		return nil
	}
	if b.guardLinks == nil {
		b.guardLinks = map[string]link.Link{}
	}
	progs := make([]cgroupProg, 0, len(guardHooks))
	for _, h := range guardHooks {
		progs = append(progs, cgroupProg{h.name, h.attach, h.prog(&b.guard)})
	}
	return b.attachProgs("guard", b.guardLinks, progs, b.guardPin)
}

// guardActive names the guard hooks in force, for status and doctor.
func (b *Backend) guardActive() []string {
	var out []string
	for _, h := range guardHooks {
		if _, ok := b.guardLinks[h.name]; ok {
			out = append(out, h.name)
		}
	}
	return out
}

// closeGuard releases the guard's links (pins stay unless reset) and objects.
func (b *Backend) closeGuard(unpin bool) {
	for name, l := range b.guardLinks {
		if unpin {
			l.Unpin()
		}
		l.Close()
		delete(b.guardLinks, name)
	}
	if unpin {
		os.Remove(filepath.Join(b.cfg.PinDir, "sock_heirs"))
	}
}

// syncGuard re-attaches guard hooks someone detached or unpinned.
func (b *Backend) syncGuard(report func(bool, string, ...any)) {
	gone := b.syncLinks("guard ", b.guardLinks, b.guardPin, report)
	if b.guardOK {
		path := filepath.Join(b.cfg.PinDir, "sock_heirs")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			os.MkdirAll(b.cfg.PinDir, 0o700)
			err := repin(b.guard.SockHeirs, path)
			report(err == nil, "map pin %s was removed", path)
		}
	}
	if len(gone) > 0 {
		err := b.attachGuard()
		for _, name := range gone {
			report(err == nil, "%s guard program was detached from %s", name, b.cgroupPath)
		}
	}
}
