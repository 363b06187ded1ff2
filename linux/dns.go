//go:build linux

package linux

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/dnsproxy"
)

// DNS names (issue 15, DESIGN.md "Destination entries"). The datapath's
// connect and sendmsg hooks steer the port-53 traffic of a rule with name
// entries, when addressed to a trusted resolver, to the forwarder
// (bpf/dns.h); the programs here give the program back the server it asked
// on replies (recvmsg) and connected sockets (getpeername). The forwarder
// finds who asked with Origin and makes the answer true in the kernel with
// Learn before it releases it (dns_bind.go).
type dnsHook struct {
	name   string
	attach ebpf.AttachType
	prog   func(*dnsObjects) *ebpf.Program
}

var dnsHooks = []dnsHook{
	{"dns_recvmsg4", ebpf.AttachCGroupUDP4Recvmsg, func(o *dnsObjects) *ebpf.Program { return o.ExewallDnsRecvmsg4 }},
	{"dns_recvmsg6", ebpf.AttachCGroupUDP6Recvmsg, func(o *dnsObjects) *ebpf.Program { return o.ExewallDnsRecvmsg6 }},
	{"dns_getpeername4", ebpf.AttachCgroupInet4GetPeername, func(o *dnsObjects) *ebpf.Program { return o.ExewallDnsGetpeername4 }},
	{"dns_getpeername6", ebpf.AttachCgroupInet6GetPeername, func(o *dnsObjects) *ebpf.Program { return o.ExewallDnsGetpeername6 }},
	{"dns_egress", ebpf.AttachCGroupInetEgress, func(o *dnsObjects) *ebpf.Program { return o.ExewallDnsEgress }},
}

// ErrNoDNSHooks is returned by the DNS seam when this kernel refused the hooks.
var ErrNoDNSHooks = errors.New("the DNS hooks are not loaded")

func (b *Backend) loadDNS(repl map[string]*ebpf.Map) error {
	spec, err := loadDns()
	if err != nil {
		return err
	}
	if specHook != nil {
		specHook(spec)
	}
	if err := b.loadObjects("dns", _DnsBytes, spec, &b.dnsObjs, &ebpf.CollectionOptions{MapReplacements: onlyMaps(spec, repl)}); err != nil {
		return notSupported("load dns hooks", err)
	}
	b.dnsOK = true
	return nil
}

func (b *Backend) dnsPin(name string) string { return filepath.Join(b.cfg.PinDir, "link_"+name) }

// attachDNS attaches (or adopts) the DNS hooks on our cgroup, like
// attachGuard. A kernel that refuses them keeps name entries refused.
func (b *Backend) attachDNS() error {
	if !b.dnsOK {
		return nil
	}
	if b.dnsLinks == nil {
		b.dnsLinks = map[string]link.Link{}
	}
	progs := make([]cgroupProg, 0, len(dnsHooks))
	for _, h := range dnsHooks {
		progs = append(progs, cgroupProg{h.name, h.attach, h.prog(&b.dnsObjs)})
	}
	return b.attachProgs("dns", b.dnsLinks, progs, b.dnsPin)
}

// syncDNS re-attaches DNS hooks someone detached and re-pins their links.
func (b *Backend) syncDNS(report func(bool, string, ...any)) {
	gone := b.syncLinks("", b.dnsLinks, b.dnsPin, report)
	if len(gone) > 0 {
		err := b.attachDNS()
		for _, name := range gone {
			report(err == nil, "%s program was detached from %s", name, b.cgroupPath)
		}
	}
}

// dnsActive names the DNS hooks in force, for status and doctor.
func (b *Backend) dnsActive() []string {
	var out []string
	for _, h := range dnsHooks {
		if _, ok := b.dnsLinks[h.name]; ok {
			out = append(out, h.name)
		}
	}
	return out
}

func (b *Backend) closeDNS(unpin bool) {
	for name, l := range b.dnsLinks {
		if unpin {
			l.Unpin()
		}
		l.Close()
		delete(b.dnsLinks, name)
	}
	b.dnsObjs.Close()
	if b.origin != nil {
		b.origin.close()
	}
}

// dnsReady reports whether name entries can be enforced here.
func (b *Backend) dnsReady() error {
	if err := b.optional["dns"]; err != nil {
		return err
	}
	if !b.dnsOK {
		return ErrNoDNSHooks
	}
	return nil
}

// SetForwarder tells the kernel where the forwarder listens (loopback
// addresses from dnsproxy.Proxy.Addrs) and which process it is: its own
// upstream queries are never steered. A zero AddrPort leaves that path
// without a forwarder: its lookups fail. Call it with zero values when the
// forwarder stops.
func (b *Backend) SetForwarder(udp4, tcp4, udp6, tcp6 netip.AddrPort, pid int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.dnsReady(); err != nil {
		return err
	}
	for _, ap := range []netip.AddrPort{udp4, tcp4, udp6, tcp6} {
		if ap.IsValid() && !ap.Addr().IsLoopback() {
			return fmt.Errorf("forwarder address %s is not loopback", ap)
		}
	}
	if udp4.IsValid() && tcp4.IsValid() && udp4.Addr() != tcp4.Addr() || udp6.IsValid() && tcp6.IsValid() && udp6.Addr() != tcp6.Addr() {
		return errors.New("the forwarder's UDP and TCP listeners must share an address per family")
	}
	b.fwd = forwarder{udp4: udp4, tcp4: tcp4, udp6: udp6, tcp6: tcp6, pid: uint32(pid), active: b.fwd.active, learning: b.fwd.learning}
	if b.origin == nil {
		o, err := newDiag()
		if err != nil {
			return err
		}
		o.mapFast(b.dnsObjs.DnsFast)
		b.origin = o
	}
	return b.writeFwd()
}

type forwarder struct {
	udp4, tcp4, udp6, tcp6 netip.AddrPort
	pid                    uint32
	active                 bool // the policy in force has name entries
	learning               bool // a learning session: every query is steered
}

// SetLearnDNS makes every process's queries to a trusted resolver go
// through the forwarder (on) while a learning session runs, so it can
// report which names programs looked up (dnsproxy Config.Observe, with
// Asker); such an answer binds nothing. Call it before the learning policy
// is applied, and with false when the session ends.
func (b *Backend) SetLearnDNS(on bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.dnsReady(); err != nil {
		return err
	}
	b.fwd.learning = on
	return b.writeFwd()
}

func (b *Backend) writeFwd() error {
	f := b.fwd
	var c datapathDnsConf
	for _, ap := range []netip.AddrPort{f.udp4, f.tcp4} {
		if ap.IsValid() {
			a := ap.Addr().Unmap().As4()
			c.Ip4 = nativeU32(a[:])
		}
	}
	for _, ap := range []netip.AddrPort{f.udp6, f.tcp6} {
		if ap.IsValid() {
			a := ap.Addr().As16()
			for i := range c.Ip6 {
				c.Ip6[i] = nativeU32(a[4*i:])
			}
		}
	}
	c.Udp4, c.Tcp4, c.Udp6, c.Tcp6 = f.udp4.Port(), f.tcp4.Port(), f.udp6.Port(), f.tcp6.Port()
	c.SelfTgid = f.pid
	c.Active = b2u(f.active || f.learning)
	c.Learning = b2u(f.learning)
	c.OddPorts = b2u(slices.ContainsFunc(b.trusted, func(s netip.AddrPort) bool { return s.Port() != 53 }))
	if err := b.objs.DnsFwd.Update(uint32(0), c, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write dns forwarder: %w", err)
	}
	return nil
}

// writeResolvers makes the trusted resolvers of p the ones steered: the
// policy's resolvers:, else the host's.
func (b *Backend) writeResolvers(p *engine.Policy) error {
	want, err := dnsproxy.TrustedResolvers(p.Resolvers)
	if err != nil {
		b.log.Warn("read the host's resolvers", "err", err)
	}
	keys := map[datapathDnsServer]uint8{}
	var trusted []netip.AddrPort
	for _, ap := range want {
		if ap.Port() == 0 {
			ap = netip.AddrPortFrom(ap.Addr(), 53)
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		trusted = append(trusted, ap)
		fam, _, addr := famAddr(netip.PrefixFrom(ap.Addr(), ap.Addr().BitLen()))
		keys[datapathDnsServer{Addr: addr, Port: ap.Port(), Family: uint8(fam)}] = 1
	}
	var stale []datapathDnsServer
	var k datapathDnsServer
	var v uint8
	it := b.objs.DnsResolvers.Iterate()
	for it.Next(&k, &v) {
		if _, ok := keys[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := batchUpdate(b.objs.DnsResolvers, keys); err != nil {
		return fmt.Errorf("write trusted resolvers: %w", err)
	}
	for _, k := range stale {
		b.objs.DnsResolvers.Delete(k)
	}
	b.trusted = trusted
	b.fwd.active = p.HasNames()
	return b.writeFwd()
}
