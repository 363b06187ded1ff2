//go:build linux

package linux

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// loadOptional loads the hooks that harden the datapath but that some
// kernels refuse: the exec-time identity hook (tp_btf) and the held-socket
// iterators (iter/tcp, iter/udp with bpf_sock_destroy). Each shares the
// datapath's maps. What cannot load is recorded and reported, never fatal.
func (b *Backend) loadOptional() {
	b.optional = map[string]error{}
	repl := b.mapsByName()

	if f, err := os.Open(b.cgroupPath); err == nil {
		// The exec hook is not bound to a cgroup: it checks this one.
		err = b.objs.AttachCgroup.Update(uint32(0), uint32(f.Fd()), ebpf.UpdateAny)
		f.Close()
		if err != nil {
			b.optional["exec"] = fmt.Errorf("set attach cgroup: %w", err)
		}
	}
	if b.optional["exec"] == nil {
		b.optional["exec"] = b.loadExecHook(repl)
	}
	b.optional["guard"] = b.loadGuard(repl)
	b.optional["sock_destroy"] = b.loadSocketIters(repl)
	for name, err := range b.optional {
		if err != nil {
			b.log.Warn("optional hook unavailable", "hook", name, "err", err)
		}
	}
}

func (b *Backend) mapsByName() map[string]*ebpf.Map {
	spec, _ := loadDatapath()
	out := map[string]*ebpf.Map{}
	for name := range spec.Maps {
		if m := b.mapByName(name); m != nil {
			out[name] = m
		}
	}
	return out
}

func (b *Backend) mapByName(name string) *ebpf.Map {
	m := map[string]*ebpf.Map{
		"active": b.objs.Active, "configs": b.objs.Configs, "exe_rules": b.objs.ExeRules,
		"cgroup_rules": b.objs.CgroupRules, "uid_rules": b.objs.UidRules, "gid_rules": b.objs.GidRules,
		"dests": b.objs.Dests, "local_nets": b.objs.LocalNets, "counters": b.objs.Counters,
		"counter_names": b.objs.CounterNames, "events_lost": b.objs.EventsLost, "events": b.objs.Events,
		"exe_learned": b.objs.ExeLearned, "learned_count": b.objs.LearnedCount, "path_rules": b.objs.PathRules,
		"attach_cgroup": b.objs.AttachCgroup, "sock_owners": b.objs.SockOwners, "sock_doomed": b.objs.SockDoomed, "event_gates": b.objs.EventGates,
		"name_rules": b.objs.NameRules, "exe_named": b.objs.ExeNamed,
		"task_states": b.objs.TaskStates, "proc_idents": b.objs.ProcIdents, "loaders": b.objs.Loaders, "loader_pending": b.objs.LoaderPending,
	}
	return m[name]
}

func onlyMaps(spec *ebpf.CollectionSpec, repl map[string]*ebpf.Map) map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	for name := range spec.Maps {
		if m, ok := repl[name]; ok {
			out[name] = m
		}
	}
	return out
}

func (b *Backend) execPin() string { return b.identPin("exec") }

// identPin is where an identity hook's link is pinned (exec, fork, exit,
// loader).
func (b *Backend) identPin(name string) string { return filepath.Join(b.cfg.PinDir, "link_"+name) }

func (b *Backend) loadExecHook(repl map[string]*ebpf.Map) error {
	spec, err := loadExecwatch()
	if err != nil {
		return err
	}
	names, err := b.exeNamesMap(spec)
	if err != nil {
		return err
	}
	defer names.Close()
	maps := onlyMaps(spec, repl)
	maps[exeNamesPin] = names
	if err := spec.Variables["use_task_storage"].Set(b.taskStorage); err != nil {
		return err
	}
	if err := spec.LoadAndAssign(&b.exec, &ebpf.CollectionOptions{MapReplacements: maps}); err != nil {
		return fmt.Errorf("load exec hook: %w", err)
	}
	// Fork, exit and the loader's reads first: an exec recorded before its
	// process can fork must be inherited.
	for _, h := range []struct {
		name string
		prog *ebpf.Program
	}{{"fork", b.exec.ExewallFork}, {"exit", b.exec.ExewallExit}, {"loader", b.exec.ExewallLoaderRead}, {"exec", b.exec.ExewallExec}} {
		l, err := link.AttachTracing(link.TracingOptions{Program: h.prog})
		if err != nil {
			return fmt.Errorf("attach %s hook: %w", h.name, err)
		}
		// Replace an older daemon's link: it is pinned so the hook outlives
		// a daemon, and running both for a moment is harmless (same maps).
		pin := b.identPin(h.name)
		if old, err := link.LoadPinnedLink(pin, nil); err == nil {
			old.Unpin()
			old.Close()
		}
		if err := l.Pin(pin); err != nil {
			l.Close()
			return fmt.Errorf("pin %s hook: %w", h.name, err)
		}
		if h.name == "exec" {
			b.execLink = l
		} else {
			if b.identLinks == nil {
				b.identLinks = map[string]link.Link{}
			}
			b.identLinks[h.name] = l
		}
	}
	// Processes already running have no exec record: take theirs now.
	if err := b.seedIdentities(); err != nil {
		b.log.Warn("record identities of running processes", "err", err)
	}
	return nil
}

// seedIdentities records mm->exe_file of every running process that has no
// identity yet (started before exewall loaded), once.
func (b *Backend) seedIdentities() error {
	it, err := link.AttachIter(link.IterOptions{Program: b.exec.ExewallSeed})
	if err != nil {
		return err
	}
	defer it.Close()
	rd, err := it.Open()
	if err != nil {
		return err
	}
	defer rd.Close()
	_, err = io.Copy(io.Discard, rd)
	return err
}

func (b *Backend) loadSocketIters(repl map[string]*ebpf.Map) error {
	spec, err := loadSockets()
	if err != nil {
		return err
	}
	if err := spec.LoadAndAssign(&b.socks, &ebpf.CollectionOptions{MapReplacements: onlyMaps(spec, repl)}); err != nil {
		return fmt.Errorf("load socket iterators: %w", err)
	}
	for _, p := range []*ebpf.Program{b.socks.ExewallSocksTcp, b.socks.ExewallSocksUdp, b.socks.ExewallDestroyTcp, b.socks.ExewallDestroyUdp} {
		it, err := link.AttachIter(link.IterOptions{Program: p})
		if err != nil {
			for _, it := range b.sockIter {
				it.Close()
			}
			b.sockIter = nil
			return fmt.Errorf("attach socket iterator: %w", err)
		}
		b.sockIter = append(b.sockIter, it)
	}
	return nil
}

// activeHooks names every hook in force, for status and doctor.
func (b *Backend) activeHooks() []string {
	var out []string
	for _, h := range hooks {
		if _, ok := b.links[h.name]; ok {
			out = append(out, h.name)
		}
	}
	if len(out) == 0 {
		return out // nothing attached yet: the optional hooks do not judge alone
	}
	if b.execLink != nil {
		out = append(out, "exec")
		if b.taskStorage == 1 {
			out = append(out, "identity:task-storage")
		} else {
			out = append(out, "identity:tgid-map")
		}
	}
	if b.sockIter != nil {
		out = append(out, "sock_destroy")
	}
	return append(out, b.guardActive()...)
}

// OptionalHooks reports the optional hooks that could not load, and why.
func (b *Backend) OptionalHooks() map[string]error {
	out := map[string]error{}
	for k, v := range b.optional {
		if v != nil {
			out[k] = v
		}
	}
	return out
}

var errNoIters = errors.New("socket iterators unavailable")
