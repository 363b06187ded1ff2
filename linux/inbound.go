//go:build linux

package linux

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/exewall/exewall/engine"
)

// The inbound hooks (bpf/inbound.c) judge what a program accepts (DESIGN.md
// "How a connection is judged", rule 5): cgroup_skb/ingress judges every
// packet to a TCP listener and every datagram to an unconnected UDP socket
// by the rule of the socket's creator, before the listener answers and
// before the datagram is queued. sock_create records the creator's pid and
// comm for events; the datapath's own sendmsg4/6 programs note the peers an
// unconnected UDP socket sends to, whose datagrams are replies, in the
// per-socket record both objects share (in_socks, bpf/inbound.h). They share the datapath's maps and
// are optional: a kernel that refuses them keeps policies that restrict
// inbound refused (Refuse) and says so in status and doctor.
var inboundHooks = []struct {
	name   string
	attach ebpf.AttachType
	prog   func(*inboundObjects) *ebpf.Program
}{
	{"in_create", ebpf.AttachCGroupInetSockCreate, func(o *inboundObjects) *ebpf.Program { return o.ExewallInCreate }},
	{"ingress", ebpf.AttachCGroupInetIngress, func(o *inboundObjects) *ebpf.Program { return o.ExewallIngress }},
}

// inboundMap is the pinned per-socket storage of the inbound hooks: a
// socket's creator must outlive a daemon restart.
const inboundMap = "in_socks"

// retiredInboundHooks are inbound hooks of earlier versions, whose pinned
// links a restarted daemon removes: in_send4/6 noted UDP peers in a second
// sendmsg program, which the datapath's sendmsg programs now do themselves.
var retiredInboundHooks = []string{"in_send4", "in_send6"}

func (b *Backend) inboundPin(name string) string {
	return filepath.Join(b.cfg.PinDir, "link_inbound_"+name)
}

// loadInbound loads the inbound programs with the datapath's maps.
func (b *Backend) loadInbound(repl map[string]*ebpf.Map) error {
	spec, err := loadInbound()
	if err != nil {
		return err
	}
	spec.Maps[inboundMap].Pinning = ebpf.PinByName
	opts := &ebpf.CollectionOptions{MapReplacements: onlyMaps(spec, repl), Maps: ebpf.MapOptions{PinPath: b.cfg.PinDir}}
	if err := b.loadObjects("inbound", _InboundBytes, spec, &b.inbound, opts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return fmt.Errorf("load inbound hooks: %+v", ve)
		}
		return notSupported("load inbound hooks", err)
	}
	b.inboundOK = true
	return nil
}

// needsInbound reports whether policy p restricts what some program
// accepts: a default_inbound other than allow, or a rule whose inbound
// verdict is not "anyone" (action deny or local-only, or a deny entry
// covering "in"; the rules ruleout.go compiles with in_open unset). Only
// such a policy has the inbound hooks attached: with none of them, every
// packet would be allowed by them anyway, and their cost (a program per
// packet, per UDP send and per socket) is not paid.
func needsInbound(p *engine.Policy) bool {
	if p == nil {
		return false
	}
	if p.DefaultInbound != engine.ActionAllow {
		return true
	}
	for i := range p.Rules {
		if r := &p.Rules[i]; r.Action != engine.ActionAllow || denies(r, engine.DirIn) {
			return true
		}
	}
	return false
}

// inboundBefore runs before policy p comes into force: a policy that
// restricts inbound finds the hooks attached (they judge by the policy word,
// so until the switch they apply the old policy, which they then found open
// or judged already). Sockets made before the hooks were attached get their
// creator record from the process holding them (recordCreators). A failure
// fails the apply: the old policy stays in force.
func (b *Backend) inboundBefore(p *engine.Policy) error {
	if !needsInbound(p) || !b.inboundOK || len(b.inboundLinks) == len(inboundHooks) {
		return nil
	}
	if err := b.attachInbound(); err != nil {
		return fmt.Errorf("attach inbound hooks: %w", err)
	}
	if n, err := b.recordCreators(); err != nil {
		b.log.Warn("inbound: creator records of existing sockets", "err", err)
	} else {
		b.log.Debug("inbound hooks attached", "existing sockets recorded", n)
	}
	return nil
}

// inboundAfter runs once policy p is in force: if it restricts nothing
// inbound the hooks go (the old policy no longer judges anything).
func (b *Backend) inboundAfter(p *engine.Policy) {
	if !needsInbound(p) && len(b.inboundLinks) > 0 {
		b.detachInbound()
	}
}

// attachInbound attaches (or adopts, replacing the program in place) the
// inbound hooks on our cgroup. The ingress hook goes last: it judges only
// with the creator records the others keep.
func (b *Backend) attachInbound() error {
	if !b.inboundOK {
		return nil
	}
	if b.inboundLinks == nil {
		b.inboundLinks = map[string]link.Link{}
	}
	progs := make([]cgroupProg, 0, len(inboundHooks))
	for _, h := range inboundHooks {
		progs = append(progs, cgroupProg{h.name, h.attach, h.prog(&b.inbound)})
	}
	err := b.attachProgs("inbound", b.inboundLinks, progs, b.inboundPin)
	if err == nil {
		b.optional["inbound"] = nil // an earlier failure is over
	}
	return err
}

// adoptInbound takes over the inbound links an earlier daemon pinned (its
// policy needed them) or updates ours in place; it attaches nothing new:
// inboundBefore does, for the policy that needs them.
func (b *Backend) adoptInbound() {
	b.dropRetiredInbound()
	if !b.inboundOK {
		return
	}
	if len(b.inboundLinks) == 0 {
		pinned := false
		for _, h := range inboundHooks {
			if _, err := os.Stat(b.inboundPin(h.name)); err == nil {
				pinned = true
			}
		}
		if !pinned {
			return
		}
	}
	b.attachInbound()
}

// dropRetiredInbound detaches the links of retiredInboundHooks an earlier
// daemon pinned. Called once the datapath's own programs are in place, so
// no UDP send goes without its peer noted.
func (b *Backend) dropRetiredInbound() {
	for _, name := range retiredInboundHooks {
		if l, err := link.LoadPinnedLink(b.inboundPin(name), nil); err == nil {
			l.Unpin()
			l.Close()
			b.log.Debug("inbound: retired hook detached", "hook", name)
		}
	}
}

// detachInbound removes the inbound links and their pins.
func (b *Backend) detachInbound() {
	// The ingress hook first: it judges with the records the others keep.
	for i := len(inboundHooks) - 1; i >= 0; i-- {
		name := inboundHooks[i].name
		if l, ok := b.inboundLinks[name]; ok {
			l.Unpin()
			l.Close()
			delete(b.inboundLinks, name)
		}
		os.Remove(b.inboundPin(name))
	}
}

// inboundHookNames names the inbound hooks in force, for status and doctor.
func (b *Backend) inboundHookNames() []string {
	var out []string
	for _, h := range inboundHooks {
		if _, ok := b.inboundLinks[h.name]; ok {
			out = append(out, h.name)
		}
	}
	return out
}

// closeInbound releases the inbound links (pins stay unless reset) and
// objects.
func (b *Backend) closeInbound(unpin bool) {
	for name, l := range b.inboundLinks {
		if unpin {
			l.Unpin()
		}
		l.Close()
		delete(b.inboundLinks, name)
	}
	if unpin {
		os.Remove(filepath.Join(b.cfg.PinDir, inboundMap))
	}
	b.inbound.Close()
}

// syncInbound re-attaches inbound hooks someone detached or unpinned.
func (b *Backend) syncInbound(report func(bool, string, ...any)) {
	gone := b.syncLinks("inbound ", b.inboundLinks, b.inboundPin, report)
	if b.inboundOK {
		path := filepath.Join(b.cfg.PinDir, inboundMap)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			os.MkdirAll(b.cfg.PinDir, 0o700)
			err := repin(b.inbound.InSocks, path)
			report(err == nil, "map pin %s was removed", path)
		}
	}
	if len(gone) > 0 {
		err := b.attachInbound()
		for _, name := range gone {
			report(err == nil, "%s inbound program was detached from %s", name, b.cgroupPath)
		}
	}
}

// inboundCheck is doctor's line for the inbound hooks.
var inboundCheck = struct {
	hook, name, would, without string
	load                       func() error
}{"inbound", "hook inbound (cgroup_skb/ingress, sock_create)",
	"what a program accepts is judged by its rule (TCP at the SYN, UDP per datagram), and policies with default_inbound or \"in\" entries are enforced",
	"programs accept any peer and such policies are refused",
	func() error {
		spec, err := loadInbound()
		if err != nil {
			return err
		}
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
		return tryLoadSpec(spec, &inboundObjects{})
	}}
