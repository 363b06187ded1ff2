//go:build linux

package linux

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// loadOptional loads the hooks that harden the datapath but that some
// kernels refuse: the exec-time identity hook (tp_btf) and the held-socket
// iterators (iter/tcp, iter/udp with bpf_sock_destroy). Each shares the
// datapath's maps. What cannot load is recorded and reported, never fatal.
// The objects are independent of each other (but for the socket iterators,
// which read the guard's sock_heirs), so each loads on a goroutine of its
// own: the verifier's walk of one runs while another's runs on the other
// CPU.
//
// All but the exec hook need nothing of the datapath but its maps: New
// starts them (startOptional) as soon as the maps exist, while the
// datapath's programs are still being verified; early is that start, nil
// when there was none.
func (b *Backend) loadOptional(early *optionalLoad) {
	repl := b.mapsByName()
	if early == nil {
		early = b.startOptional(repl)
	}
	var execErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		if execErr = disabledByTest("exec"); execErr == nil {
			execErr = b.loadExecHook(maps.Clone(repl))
		}
		if execErr != nil {
			// An earlier daemon's hook would keep running beside a status
			// that says it is off.
			if old, err := link.LoadPinnedLink(b.execPin(), nil); err == nil {
				old.Unpin()
				old.Close()
			}
		}
	}()
	early.wg.Wait()
	<-done
	b.carryIdentities() // when the exec hook could not load
	b.optional = map[string]error{"sock_create": disabledByTest("sock_create"), "exec": execErr, "guard": early.guard,
		"dns": early.dns, "inbound": early.inbound, "sock_destroy": early.destroy}
	for name, err := range b.optional {
		if err != nil {
			b.log.Warn("optional hook unavailable", "hook", name, "err", err)
		}
	}
}

// optionalLoad is the loading of the optional objects that need only the
// datapath's maps: wait on wg before reading the errors.
type optionalLoad struct {
	wg                           sync.WaitGroup
	guard, destroy, dns, inbound error
}

// startOptional starts loading the guard and the socket iterators, the
// DNS hooks and the inbound hooks against the datapath's maps repl (by
// their names in its object file), each on a goroutine of its own.
func (b *Backend) startOptional(repl map[string]*ebpf.Map) *optionalLoad {
	o := &optionalLoad{}
	run := func(fn func()) {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			fn()
		}()
	}
	run(func() {
		// The guard first: it adds sock_heirs to repl, which the socket
		// iterators read to find an accepted socket's creator.
		r := maps.Clone(repl)
		if o.guard = disabledByTest("guard"); o.guard == nil {
			o.guard = b.loadGuard(r)
		}
		if o.destroy = disabledByTest("sock_destroy"); o.destroy == nil {
			o.destroy = b.loadSocketIters(r)
		}
	})
	run(func() {
		if o.dns = disabledByTest("dns"); o.dns == nil {
			o.dns = b.loadDNS(maps.Clone(repl))
		}
	})
	run(func() {
		if o.inbound = disabledByTest("inbound"); o.inbound == nil {
			o.inbound = b.loadInbound(maps.Clone(repl))
		}
	})
	return o
}

// dropOptional waits for o and closes what it loaded: the datapath it was
// loaded against failed to load (New loads them again against the next).
// Their programs stay pinned; the next load adopts them only if they use
// the maps it gives them.
func (b *Backend) dropOptional(o *optionalLoad) {
	o.wg.Wait()
	for _, it := range b.sockIter {
		it.Close()
	}
	b.sockIter = nil
	closeObjects(&b.guard)
	closeObjects(&b.socks)
	closeObjects(&b.dnsObjs)
	closeObjects(&b.inbound)
	b.guardOK, b.dnsOK, b.inboundOK = false, false, false
}

// mapsByName lists the datapath's maps by their names in the object file,
// read from the struct bpf2go generated from it: no list is kept by hand.
func (b *Backend) mapsByName() map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	v := reflect.ValueOf(&b.objs.datapathMaps).Elem()
	for i := range v.NumField() {
		if m, ok := v.Field(i).Interface().(*ebpf.Map); ok && m != nil {
			out[v.Type().Field(i).Tag.Get("ebpf")] = m
		}
	}
	return out
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
	// The exec hook is not bound to a cgroup: it checks this one.
	f, err := os.Open(b.cgroupPath)
	if err != nil {
		return err
	}
	err = b.objs.AttachCgroup.Update(uint32(0), uint32(f.Fd()), ebpf.UpdateAny)
	f.Close()
	if err != nil {
		return fmt.Errorf("set attach cgroup: %w", err)
	}
	spec, err := loadExecwatch()
	if err != nil {
		return err
	}
	if specHook != nil {
		specHook(spec)
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
	if err := b.loadObjects("exec", _ExecwatchBytes, spec, &b.exec, &ebpf.CollectionOptions{MapReplacements: maps}, b.taskStorage); err != nil {
		return notSupported("load exec hook", err)
	}
	// Fork, exit and the loader's reads first: an exec recorded before its
	// process can fork must be inherited.
	for _, h := range []struct {
		name string
		prog *ebpf.Program
	}{{"fork", b.exec.ExewallFork}, {"exit", b.exec.ExewallExit}, {"loader", b.exec.ExewallLoaderRead}, {"exec", b.exec.ExewallExec}} {
		pin := b.identPin(h.name)
		old, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			old = nil
		}
		l := old
		if old == nil || b.repin || !runsProgram(old, h.prog) {
			if l, err = link.AttachTracing(link.TracingOptions{Program: h.prog}); err != nil {
				if old != nil {
					old.Close()
				}
				return notSupported("attach "+h.name+" hook", err)
			}
			// Replace an older daemon's link: it is pinned so the hook
			// outlives a daemon, and running both for a moment is harmless
			// (same maps). In an upgrade to other maps the older one keeps
			// running until the cgroup hooks switch (identityMaps).
			if old != nil {
				old.Unpin()
				if b.repin {
					if b.oldIdentLinks == nil {
						b.oldIdentLinks = map[string]link.Link{}
					}
					b.oldIdentLinks[h.name] = old
				} else {
					old.Close()
				}
			}
			if err := l.Pin(pin); err != nil {
				l.Close()
				return notSupported("pin "+h.name+" hook", err)
			}
		}
		// (else the pinned link already runs this very program, adopted
		// from its pin: kept as it is. Replacing it cost an attach and a
		// detach, which waits for an RCU grace period: 10-20 ms a hook
		// here, four hooks in a row before READY.)
		if h.name == "exec" {
			b.execLink = l
		} else {
			if b.identLinks == nil {
				b.identLinks = map[string]link.Link{}
			}
			b.identLinks[h.name] = l
		}
	}
	// Our hooks run: the older daemon's records can be copied (upgrade),
	// then processes still without one take theirs from mm->exe_file.
	b.carryIdentities()
	if err := b.seedIdentities(); err != nil {
		b.log.Warn("record identities of running processes", "err", err)
	}
	return nil
}

// runsProgram reports whether l runs prog (the same program, by its ID).
func runsProgram(l link.Link, prog *ebpf.Program) bool {
	li, err := l.Info()
	if err != nil {
		return false
	}
	pi, err := prog.Info()
	if err != nil {
		return false
	}
	id, ok := pi.ID()
	return ok && li.Program == id
}

// seedIdentities records mm->exe_file of every running process that has no
// identity yet (started before exewall loaded), once.
func (b *Backend) seedIdentities() error { return runIter(b.exec.ExewallSeed, "the identity seeder") }

func (b *Backend) loadSocketIters(repl map[string]*ebpf.Map) error {
	spec, err := loadSockets()
	if err != nil {
		return err
	}
	if specHook != nil {
		specHook(spec)
	}
	if err := b.loadObjects("sockets", _SocketsBytes, spec, &b.socks, &ebpf.CollectionOptions{MapReplacements: onlyMaps(spec, repl)}); err != nil {
		return notSupported("load socket iterators", err)
	}
	for _, p := range []*ebpf.Program{b.socks.ExewallSocksTcp, b.socks.ExewallSocksUdp, b.socks.ExewallDestroyTcp, b.socks.ExewallDestroyUdp} {
		it, err := link.AttachIter(link.IterOptions{Program: p})
		if err != nil {
			for _, it := range b.sockIter {
				it.Close()
			}
			b.sockIter = nil
			return notSupported("attach socket iterator", err)
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
	if b.resolver != nil && b.resolver.fallback == nil {
		out = append(out, "iter")
	}
	out = append(out, b.guardActive()...)
	out = append(out, b.dnsActive()...)
	return append(out, b.inboundHookNames()...)
}

// wantLinks is how many cgroup hooks this backend attaches.
func (b *Backend) wantLinks() int {
	n := 0
	for _, h := range hooks {
		if b.optional[h.name] == nil {
			n++
		}
	}
	return n
}

var errNoIters = errors.New("socket iterators unavailable")
