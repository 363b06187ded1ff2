//go:build linux

package linux

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/cilium/ebpf"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/dnsproxy"
)

// NameBinding is one address a process of a rule was answered for a name:
// Rule is the rule's stable id (RuleID), Names the CNAME chain, asked name
// first.
type NameBinding = dnsproxy.Binding

var (
	_ dnsproxy.Learner = (*Backend)(nil)
	_ dnsproxy.Origin  = (*Backend)(nil)
)

// A binding is kept per (rule, address): the names answered with it and
// when each runs out. It is made true in the kernel as a host node in the
// rule's destination map (/32, /128): its matching name entries merged with
// the CIDR entries that cover the address, most specific first, deny first
// at equal specificity, exactly as compile lays out CIDR nodes. A connect
// to it costs what a connect to a CIDR entry does: one hash lookup.
//
// Kept compact, one map slot per binding: the key holds the address as 16
// bytes (no netip.Addr zone pointer for the collector to scan), the value
// the names with their expiry inline.
type bindKey struct {
	slot uint32
	addr [16]byte // IPv4 as IPv4-mapped
}

func mkBindKey(slot uint32, a netip.Addr) bindKey { return bindKey{slot, a.Unmap().As16()} }

func (k bindKey) ip() netip.Addr { return netip.AddrFrom16(k.addr).Unmap() }

// bounds is the names a (rule, address) was answered for, each with when
// it runs out (Unix ns).
type bounds []nameUntil

type nameUntil struct {
	name  string
	until int64
}

func (bd bounds) index(name string) int {
	for i := range bd {
		if bd[i].name == name {
			return i
		}
	}
	return -1
}

func (bd bounds) names() []string {
	out := make([]string, len(bd))
	for i := range bd {
		out[i] = bd[i].name
	}
	return out
}

// ErrNoRule is returned by Learn for a rule id not in force (or without
// name entries): nothing is bound.
var ErrNoRule = errors.New("no rule with name entries has this id")

// RuleID returns the stable id of a rule in force (what Origin reports).
func (b *Backend) RuleID(name string) (uint32, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.slots[name]
	return s, ok
}

// RuleName names a stable rule id of the policy in force.
func (b *Backend) RuleName(id uint32) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	name, ok := b.slotName[id]
	if !ok || b.byName[name] == nil || b.slots[name] != id {
		return "", false
	}
	return name, true
}

// Learn implements dnsproxy.Learner: the bindings are in force in the
// kernel when it returns.
func (b *Backend) Learn(bs []NameBinding) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now().UnixNano()
	touched := map[bindKey]bool{}
	var errs []error
	b.bindMu.Lock()
	for _, nb := range bs {
		if nb.Rule == noRule {
			continue // asked while learning, under no name rule: nothing to bind
		}
		r := b.byName[b.slotName[nb.Rule]]
		if r == nil || !r.HasNames() || b.slots[r.Name] != nb.Rule {
			errs = append(errs, fmt.Errorf("rule id %d: %w", nb.Rule, ErrNoRule))
			continue
		}
		if !nb.Addr.IsValid() || nb.Expires.UnixNano() <= now {
			continue
		}
		k := mkBindKey(nb.Rule, nb.Addr)
		if b.bound == nil {
			b.bound = map[bindKey]bounds{}
		}
		bd, had := b.bound[k]
		if !had {
			touched[k] = true
		}
		for _, n := range nb.Names {
			if i := bd.index(n); i >= 0 {
				bd[i].until = max(bd[i].until, nb.Expires.UnixNano())
			} else {
				bd = append(bd, nameUntil{n, nb.Expires.UnixNano()})
				touched[k] = true
			}
		}
		b.bound[k] = bd
		// A name answered again only lives longer: the kernel node, which
		// holds no expiry, is already right.
	}
	b.bindMu.Unlock()
	if err := b.writeBound(touched); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Forget implements dnsproxy.Learner: the names of each binding no longer
// hold for its address (all of them when Names is empty). Connections made
// meanwhile are not cut.
func (b *Backend) Forget(bs []NameBinding) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	touched := map[bindKey]bool{}
	b.bindMu.Lock()
	for _, nb := range bs {
		k := mkBindKey(nb.Rule, nb.Addr)
		bd, ok := b.bound[k]
		if !ok {
			continue
		}
		if len(nb.Names) == 0 {
			bd = nil
		}
		for _, n := range nb.Names {
			if i := bd.index(n); i >= 0 {
				bd = slices.Delete(bd, i, i+1)
			}
		}
		b.bound[k] = bd
		touched[k] = true
	}
	b.bindMu.Unlock()
	return b.writeBound(touched)
}

// expireNames drops the names whose TTL ran out (the forwarder normally
// says so with Forget; this holds when it cannot).
func (b *Backend) expireNames() {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now().UnixNano()
	touched := map[bindKey]bool{}
	b.bindMu.Lock()
	for k, bd := range b.bound {
		n := len(bd)
		bd = slices.DeleteFunc(bd, func(e nameUntil) bool { return e.until <= now })
		if len(bd) != n {
			b.bound[k] = bd
			touched[k] = true
		}
	}
	b.bindMu.Unlock()
	if err := b.writeBound(touched); err != nil {
		b.log.Warn("expire name bindings", "err", err)
	}
}

// writeBound makes the kernel's host nodes of the touched bindings match
// the table, in the generation in force. Called with b.mu held.
func (b *Backend) writeBound(touched map[bindKey]bool) error {
	if len(touched) == 0 {
		return nil
	}
	gen, err := b.activeGen()
	if err != nil {
		return err
	}
	g := b.gens[gen]
	if g == nil || g.rules == nil {
		return errors.New("no policy generation in force")
	}
	// Keys of the generation's record are the slot; the kernel's carry the
	// generation in the rule id's top bit (ruleOut).
	var recPut []datapathDestKey
	var recDel []datapathDestKey
	put := map[datapathDestKey]datapathDestVal{}
	var del []datapathDestKey
	var errs []error
	b.bindMu.Lock()
	for k := range touched {
		r := b.byName[b.slotName[k.slot]]
		bd := b.bound[k]
		if r == nil || g.rules[k.slot] == nil {
			delete(b.bound, k)
			continue
		}
		addr := k.ip()
		rec := destKey(k.slot, netip.PrefixFrom(addr, addr.BitLen()))
		key := rec
		key.Rule |= gen << 31
		val, named, err := hostNode(r, addr, bd.names())
		if err != nil {
			errs = append(errs, err)
		}
		if len(bd) == 0 || !named {
			delete(b.bound, k) // nothing left, or no name entry of r matches
		}
		switch {
		case named && err == nil:
			put[key] = val
			recPut = append(recPut, rec)
		case exactCIDR(r, addr):
			// The rule's own host node comes back.
			base, _, _ := hostNode(r, addr, nil)
			put[key] = base
			recDel = append(recDel, rec)
		default:
			if g.bound.has(rec) {
				del = append(del, key)
			}
			recDel = append(recDel, rec)
		}
	}
	b.bindMu.Unlock()
	if err := batchUpdate(b.sized.Dests, put); err != nil {
		// What the generation holds at these keys is in doubt: the apply
		// that writes it next scans it.
		g.unsure = true
		return fmt.Errorf("write name bindings: %w", err)
	}
	for _, rec := range recPut {
		k := rec
		k.Rule |= gen << 31
		g.bound.set(rec, put[k])
	}
	for _, k := range del {
		if err := b.sized.Dests.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("remove name binding: %w", err))
		}
	}
	for _, rec := range recDel {
		g.bound.del(rec)
	}
	return errors.Join(errs...)
}

// bindNames carries the bindings into generation g of policy p before the
// switch (their rule's entries may have changed; the id is the slot, stable),
// drops those of rules gone or without name entries, and writes the trusted
// resolvers. g.bound is then every binding in force, so the switch to g
// keeps them all whatever the apply rewrites (boundDiff). Called with b.mu
// held, from applyLocked.
func (b *Backend) bindNames(g *generation, p *engine.Policy) error {
	if b.dnsReady() == nil {
		if err := b.writeResolvers(p); err != nil {
			return err
		}
	}
	if len(b.bound) == 0 {
		return nil
	}
	g.bound = boundNodes{}
	rules := make(map[string]*engine.Rule, len(p.Rules))
	for i := range p.Rules {
		rules[p.Rules[i].Name] = &p.Rules[i]
	}
	b.bindMu.Lock()
	defer b.bindMu.Unlock()
	for k, bd := range b.bound {
		r := rules[b.slotName[k.slot]]
		if r == nil || g.rules[k.slot] == nil || !r.HasNames() {
			delete(b.bound, k)
			continue
		}
		addr := k.ip()
		val, named, err := hostNode(r, addr, bd.names())
		if err != nil || !named {
			delete(b.bound, k) // the new policy has no entry for these names
			continue
		}
		g.bound.set(destKey(k.slot, netip.PrefixFrom(addr, addr.BitLen())), val)
	}
	return nil
}

// hostNode lays out the host node of addr for rule r given the names it
// was answered for: named is false when no name entry matches them.
func hostNode(r *engine.Rule, addr netip.Addr, names []string) (val datapathDestVal, named bool, err error) {
	type cand struct {
		d    engine.Dest
		v    engine.Verdict
		bits int
	}
	var cs []cand
	add := func(d engine.Dest, v engine.Verdict) {
		if !d.Dir.Covers(engine.DirOut) {
			return
		}
		if d.IsName() {
			for _, n := range names {
				if engine.NameMatches(d.Name, n) {
					cs = append(cs, cand{d, v, addr.BitLen()})
					named = true
					return
				}
			}
			return
		}
		if d.Prefix.Addr().Is4() == addr.Is4() && d.Prefix.Contains(addr) {
			cs = append(cs, cand{d, v, d.Prefix.Bits()})
		}
	}
	for _, d := range r.Deny {
		add(d, engine.VerdictDeny)
	}
	for _, d := range r.Allow {
		add(d, engine.VerdictAllow)
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].bits > cs[j].bits })
	for _, c := range cs {
		if val.Count == maxDestEntries {
			return val, named, fmt.Errorf("rule %s: more than %d destination entries cover %s; merge some", r.Name, maxDestEntries, addr)
		}
		e := datapathDestEntry{PortLo: c.d.PortLo, PortHi: c.d.PortHi, Proto: uint8(c.d.Proto), Verdict: verdictAllow}
		if c.d.AnyPort() {
			e.PortLo, e.PortHi = 0, 0xffff
		}
		if c.v == engine.VerdictDeny {
			e.Verdict = verdictDeny
		}
		val.E[val.Count] = e
		val.Count++
	}
	return val, named, nil
}

// exactCIDR reports whether compile wrote a node at addr's host prefix.
func exactCIDR(r *engine.Rule, addr netip.Addr) bool {
	host := netip.PrefixFrom(addr, addr.BitLen())
	for _, l := range [][]engine.Dest{r.Deny, r.Allow} {
		for _, d := range l {
			if !d.IsName() && d.Prefix == host {
				return true
			}
		}
	}
	return false
}

// boundNames returns the names rule r's processes were answered addr for.
func (b *Backend) boundNames(slot uint32, addr netip.Addr) []string {
	if bd := b.bound[mkBindKey(slot, addr)]; len(bd) > 0 {
		return bd.names()
	}
	return nil
}

// matchHeld is engine.MatchDests with the bindings in force: a held
// connection to a bound address is judged by its name entries.
func (b *Backend) matchHeld(r *engine.Rule, dst netip.Addr, port uint16, proto engine.Proto) (engine.Verdict, bool) {
	b.bindMu.RLock()
	names := b.boundNames(b.slots[r.Name], dst)
	b.bindMu.RUnlock()
	m, ok := engine.MatchAttempt(r, engine.Attempt{Dir: engine.DirOut, Addr: dst, Port: port, Proto: proto}, names)
	return m.Verdict, ok
}

// violationName names the name entry that decided a violation, if one did.
func (b *Backend) violationName(r *engine.Rule, slot uint32, v *engine.Violation) string {
	if r == nil || !r.HasNames() {
		return ""
	}
	b.bindMu.RLock()
	names := slices.Clone(b.boundNames(slot, v.Daddr))
	b.bindMu.RUnlock()
	if len(names) == 0 {
		return ""
	}
	proto := engine.ProtoAny
	switch v.Proto {
	case "tcp":
		proto = engine.ProtoTCP
	case "udp":
		proto = engine.ProtoUDP
	}
	m, _ := engine.MatchAttempt(r, engine.Attempt{Dir: engine.DirOut, Addr: v.Daddr, Port: v.Dport, Proto: proto}, names)
	return m.Name
}

// Bindings lists the name bindings in force, for `exewall names`.
func (b *Backend) Bindings() []NameBinding {
	b.bindMu.RLock()
	defer b.bindMu.RUnlock()
	out := make([]NameBinding, 0, len(b.bound))
	for k, bd := range b.bound {
		var until int64
		for _, e := range bd {
			until = max(until, e.until)
		}
		out = append(out, NameBinding{Rule: k.slot, Names: bd.names(), Addr: k.ip(), Expires: time.Unix(0, until)})
	}
	return out
}
