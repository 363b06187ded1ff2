//go:build linux

package linux

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

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
// when each runs out. It is made true in the kernel as an element of
// name_binds pointing at a name node of the rule (dns_gen.go): the rule's
// entries as specific as the host (the name entries its names match, deny
// first), shared by every binding of the rule whose names match the same
// entries; the rule's CIDR nodes decide what no entry there takes. A
// connect to it costs two hash lookups (the binding, its node).
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

// bindRec is the names a (rule, address) was answered for, joined by
// nameSep (one name is the answer's own string, shared with the
// forwarder's record), when the last of them runs out (Unix ns; the
// forwarder keeps one expiry per binding too), and the name node the
// binding points at in each generation of the kernel's name_binds (noNode:
// not there). 32 bytes inline in the table.
type bindRec struct {
	names string
	until int64
	node  [2]uint32
}

// nameSep cannot occur in a DNS name.
const nameSep = "\x00"

// noNode is a bindRec's node in a generation that does not hold it.
const noNode = ^uint32(0)

func newBindRec() bindRec { return bindRec{node: [2]uint32{noNode, noNode}} }

func (r *bindRec) len() int {
	if r.names == "" {
		return 0
	}
	return 1 + strings.Count(r.names, nameSep)
}

func (r *bindRec) has(name string) bool {
	for n := range strings.SplitSeq(r.names, nameSep) {
		if n == name {
			return true
		}
	}
	return false
}

// add adds name unless it is there; it reports whether it was not.
func (r *bindRec) add(name string) bool {
	if name == "" || r.names != "" && r.has(name) {
		return false
	}
	if r.names == "" {
		r.names = name
	} else {
		r.names += nameSep + name
	}
	return true
}

// forget drops the names listed.
func (r *bindRec) forget(names []string) {
	kept := slices.DeleteFunc(r.nameList(), func(n string) bool { return slices.Contains(names, n) })
	r.names = strings.Join(kept, nameSep)
}

func (r *bindRec) nameList() []string {
	if r.names == "" {
		return nil
	}
	return strings.Split(r.names, nameSep)
}

// ErrNoRule is returned by Learn for a rule id not in force (or without
// name entries): nothing is bound.
var ErrNoRule = errors.New("no rule with name entries has this id")

// RuleID returns the stable id of a rule in force (what Origin reports).
func (b *Backend) RuleID(name string) (uint32, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.slots.get(name)
	return s, ok
}

// RuleName names a stable rule id of the policy in force.
func (b *Backend) RuleName(id uint32) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	name, ok := b.slotName.get(id)
	if !ok || b.rules.named(id, name) == nil || b.slots.at(name) != id {
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
		r := b.rules.named(nb.Rule, b.slotName.name(nb.Rule))
		if r == nil || !r.HasNames() || b.slots.at(r.Name) != nb.Rule {
			errs = append(errs, fmt.Errorf("rule id %d: %w", nb.Rule, ErrNoRule))
			continue
		}
		if !nb.Addr.IsValid() || nb.Expires.UnixNano() <= now {
			continue
		}
		k := mkBindKey(nb.Rule, nb.Addr)
		if b.bound == nil {
			b.bound = map[bindKey]bindRec{}
		}
		bd, had := b.bound[k]
		if !had {
			bd = newBindRec()
			touched[k] = true
		}
		for _, n := range nb.Names {
			if bd.add(n) {
				touched[k] = true
			}
		}
		bd.until = max(bd.until, nb.Expires.UnixNano())
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
			bd.names = ""
		} else {
			bd.forget(nb.Names)
		}
		b.bound[k] = bd
		touched[k] = true
	}
	b.bindMu.Unlock()
	return b.writeBound(touched)
}

// expireNames drops the bindings whose TTL ran out (the forwarder normally
// says so with Forget; this holds when it cannot).
func (b *Backend) expireNames() {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now().UnixNano()
	touched := map[bindKey]bool{}
	b.bindMu.Lock()
	for k, bd := range b.bound {
		if bd.names != "" && bd.until <= now {
			bd.names = ""
			b.bound[k] = bd
			touched[k] = true
		}
	}
	b.bindMu.Unlock()
	if err := b.writeBound(touched); err != nil {
		b.log.Warn("expire name bindings", "err", err)
	}
}

// writeBound makes the kernel's bindings of the touched (rule, address)
// pairs match the table, in the generation in force: a name node first when
// the binding's entries have none yet, then the binding pointing at it.
// Called with b.mu held.
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
	// generation in the rule id's top bit.
	nodes := map[datapathDestKey]datapathDestVal{}
	put := map[datapathBindKey]datapathBindVal{}
	var del []datapathBindKey
	var errs []error
	b.bindMu.Lock()
	for k := range touched {
		bd, ok := b.bound[k]
		if !ok {
			continue
		}
		r := b.rules.named(k.slot, b.slotName.name(k.slot))
		addr := k.ip()
		rec := bindKeyOf(k.slot, addr)
		if r == nil || g.rules.get(k.slot) == nil {
			del = bd.drop(rec, del)
			delete(b.bound, k)
			continue
		}
		val, named, err := nameNode(r, addr, bd.nameList())
		if err != nil {
			errs = append(errs, err)
		}
		if bd.len() == 0 || !named || err != nil {
			// Nothing left, or no name entry of r matches: out of both
			// generations (the idle one is read by no new attempt).
			del = bd.drop(rec, del)
			delete(b.bound, k)
			continue
		}
		i, fresh := g.bound.node(k.slot, val)
		if fresh {
			nodes[nodeRef{k.slot, i}.key(gen)] = val
		}
		if bd.node[gen] != i {
			key := rec
			key.Rule |= gen << 31
			put[key] = g.bound.val(i)
			bd.node[gen] = i
			b.bound[k] = bd
		}
	}
	b.bindMu.Unlock()
	if err := batchUpdate(b.sized.Dests, nodes); err != nil {
		// What the generation holds at these keys is in doubt: the apply
		// that writes it next scans it.
		g.unsure = true
		return fmt.Errorf("write name nodes: %w", err)
	}
	if err := batchUpdate(b.sized.NameBinds, put); err != nil {
		g.unsure = true
		return fmt.Errorf("write name bindings: %w", err)
	}
	if err := batchDelete(b.sized.NameBinds, del); err != nil {
		for _, x := range b.gens {
			if x != nil {
				x.unsure = true
			}
		}
		errs = append(errs, fmt.Errorf("remove name bindings: %w", err))
	}
	return errors.Join(errs...)
}

// drop appends to del the kernel keys of the binding at rec (Rule the
// slot) in the generations that hold it.
func (r *bindRec) drop(rec datapathBindKey, del []datapathBindKey) []datapathBindKey {
	for gen, i := range r.node {
		if i != noNode {
			k := rec
			k.Rule |= uint32(gen) << 31
			del = append(del, k)
		}
	}
	return del
}

// droppedBind is a binding an apply dropped (its rule is gone or no longer
// matches its names): out of the generation written, and out of the one in
// force once the switch is made (dropBound).
type droppedBind struct {
	key  datapathBindKey // Rule is the slot
	node [2]uint32
}

// boundDiff adds to gone (what generation gen holds now) and now (what it
// must hold) the name bindings and nodes of old and g: what gen holds is
// the table's record of it (bindRec.node) and the bindings this apply
// dropped; what it must hold, g.bound.at (bindNames).
func (b *Backend) boundDiff(old, g *generation, gen uint32, gone, now *compiled) {
	for k, bd := range b.bound {
		if i := bd.node[gen]; i != noNode {
			kk := bindKeyOf(k.slot, k.ip())
			kk.Rule |= gen << 31
			gone.binds[kk] = old.bound.val(i)
		}
	}
	for _, d := range b.unbound {
		if i := d.node[gen]; i != noNode {
			kk := d.key
			kk.Rule |= gen << 31
			gone.binds[kk] = old.bound.val(i)
		}
	}
	boundDiff(old, g, gen, gone, now)
}

// boundWritten records, once generation gen was written from g, which
// node each binding points at there, and lets g's list of bindings go
// (the table's records hold it from now on).
func (b *Backend) boundWritten(g *generation, gen uint32) {
	if g.bound.at == nil {
		for k, bd := range b.bound {
			if bd.node[gen] != noNode {
				bd.node[gen] = noNode
				b.bound[k] = bd
			}
		}
		return
	}
	b.bindMu.Lock()
	for k, bd := range b.bound {
		i, ok := g.bound.at[bindKeyOf(k.slot, k.ip())]
		if !ok {
			i = noNode
		}
		if bd.node[gen] != i {
			bd.node[gen] = i
			b.bound[k] = bd
		}
	}
	b.bindMu.Unlock()
	g.bound.at = nil
}

// dropBound takes the bindings the last apply dropped out of every
// generation (after the switch: the generation that was in force held them
// until then).
func (b *Backend) dropBound() error {
	var del []datapathBindKey
	for _, d := range b.unbound {
		del = (&bindRec{node: d.node}).drop(d.key, del)
	}
	b.unbound = nil
	if err := batchDelete(b.sized.NameBinds, del); err != nil {
		for _, x := range b.gens {
			if x != nil {
				x.unsure = true
			}
		}
		return fmt.Errorf("remove name bindings: %w", err)
	}
	return nil
}

// addBound adds to c, the flat view of generation gen in force, the
// bindings it holds by the table's records.
func (b *Backend) addBound(c *compiled, g *generation, gen uint32) {
	b.bindMu.RLock()
	defer b.bindMu.RUnlock()
	for k, bd := range b.bound {
		if i := bd.node[gen]; i != noNode {
			kk := bindKeyOf(k.slot, k.ip())
			kk.Rule |= gen << 31
			c.binds[kk] = g.bound.val(i)
		}
	}
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
		r := rules[b.slotName.name(k.slot)]
		addr := k.ip()
		if r == nil || g.rules.get(k.slot) == nil || !r.HasNames() {
			b.unbound = append(b.unbound, droppedBind{bindKeyOf(k.slot, addr), bd.node})
			delete(b.bound, k)
			continue
		}
		val, named, err := nameNode(r, addr, bd.nameList())
		if err != nil || !named {
			// the new policy has no entry for these names
			b.unbound = append(b.unbound, droppedBind{bindKeyOf(k.slot, addr), bd.node})
			delete(b.bound, k)
			continue
		}
		g.bound.set(bindKeyOf(k.slot, addr), val)
	}
	return nil
}

// nameNode lays out the name node of a binding of rule r at addr given the
// names it was answered for: the rule's outbound entries as specific as the
// host (the name entries matching one of the names, CIDR entries of exactly
// addr), deny first, then in file order, as engine.MatchAttempt ranks them.
// When none takes an attempt the datapath goes on to the rule's CIDR nodes,
// which hold every less specific entry. named is false when no name entry
// matches the names.
func nameNode(r *engine.Rule, addr netip.Addr, names []string) (val datapathDestVal, named bool, err error) {
	host := netip.PrefixFrom(addr, addr.BitLen())
	add := func(d engine.Dest, v engine.Verdict) error {
		if !d.Dir.Covers(engine.DirOut) {
			return nil
		}
		if d.IsName() {
			if !slices.ContainsFunc(names, func(n string) bool { return engine.NameMatches(d.Name, n) }) {
				return nil
			}
			named = true
		} else if d.Prefix.Masked() != host {
			return nil
		}
		if val.Count == maxDestEntries {
			return fmt.Errorf("rule %s: more than %d destination entries cover %s; merge some", r.Name, maxDestEntries, addr)
		}
		e := datapathDestEntry{PortLo: d.PortLo, PortHi: d.PortHi, Proto: uint8(d.Proto), Verdict: verdictAllow, Dir: uint8(d.Dir)}
		if d.AnyPort() {
			e.PortLo, e.PortHi = 0, 0xffff
		}
		if v == engine.VerdictDeny {
			e.Verdict = verdictDeny
		}
		val.E[val.Count] = e
		val.Count++
		return nil
	}
	for _, d := range r.Deny {
		if err := add(d, engine.VerdictDeny); err != nil {
			return val, named, err
		}
	}
	for _, d := range r.Allow {
		if err := add(d, engine.VerdictAllow); err != nil {
			return val, named, err
		}
	}
	return val, named, nil
}

// boundNames returns the names rule r's processes were answered addr for.
func (b *Backend) boundNames(slot uint32, addr netip.Addr) []string {
	if bd := b.bound[mkBindKey(slot, addr)]; bd.len() > 0 {
		return bd.nameList()
	}
	return nil
}

// matchHeld is engine.MatchDests with the bindings in force: a held
// connection to a bound address is judged by its name entries.
func (b *Backend) matchHeld(r *engine.Rule, dst netip.Addr, port uint16, proto engine.Proto) (engine.Verdict, bool) {
	b.bindMu.RLock()
	names := b.boundNames(b.slots.at(r.Name), dst)
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
		out = append(out, NameBinding{Rule: k.slot, Names: bd.nameList(), Addr: k.ip(), Expires: time.Unix(0, bd.until)})
	}
	return out
}
