//go:build linux

package linux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"iter"
	"slices"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/exewall/exewall/engine"
)

// ruleOut is what one rule puts in the datapath's maps, without the
// generation (stamped when written: keys' Gen, the top bit of rule ids). It
// never changes once built, so the two generations share the ruleOut of
// every rule that did not change, and an apply compiles and writes only the
// rules that did.
type ruleOut struct {
	sum    ruleSum  // what it was compiled from, but its action and audit (in rule)
	rule   ruleHead // Id is the slot, without the generation
	sel    uint8    // selCgroup, selUser, selGroup; 0 for an exe rule
	hasID  bool     // a cgroup: rule's cgroup exists
	hasKey bool
	// where is the exe's resolution, which says where it lives, for its
	// path entry (pathKey; the 88-byte key is made when written); nil when
	// that is not known. The watcher's entry itself (exeIDs), which never
	// changes: a place of its own made a ruleOut 32 bytes larger.
	where *exeEntry
	// key is the exe's identity when it has exactly one (hasKey), as nearly
	// every exe rule has; for a cgroup:, user: or group: rule, key.Ino is
	// the cgroup id, uid or gid (selID). One field for both, and what few
	// rules have apart (more), keep a ruleOut at 96 bytes, not 176.
	key   datapathFileId
	dests []destOut
	more  *ruleOutMore
}

// ruleHead is the datapath's rule value (datapathRule) without its prefix
// lengths, which are those of the rule's destination nodes (stamped makes
// them): 16 bytes, not 36, in every ruleOut.
type ruleHead struct {
	Id, Counter                                             uint32
	Action, Audit, HasDests, Unrestricted, HasNames, InOpen uint8
}

// place is where o's exe lives, if that is known.
func (o *ruleOut) place() (place, bool) {
	if o.where == nil {
		return place{}, false
	}
	return o.where.pl, true
}

// samePlace says whether o and m write the same path entry.
func (o *ruleOut) samePlace(m *ruleOut) bool {
	return o.where == m.where || o.where != nil && m.where != nil && o.where.pl == m.where.pl
}

// ruleOutMore is what an exe rule rarely has: several identities (an old
// binary still running), symlink names.
type ruleOutMore struct {
	exe   []datapathFileId // every identity, when there are several
	names []uint64         // hashes of the symlink names
}

// exe is the identities o's exe rule writes.
func (o *ruleOut) exe() []datapathFileId {
	if o.more != nil && o.more.exe != nil {
		return o.more.exe
	}
	if o.hasKey {
		return unsafe.Slice(&o.key, 1)
	}
	return nil
}

// names is the hashes of the symlink names o's exe rule writes.
func (o *ruleOut) names() []uint64 {
	if o.more == nil {
		return nil
	}
	return o.more.names
}

// selID is the cgroup id, uid or gid of a selector rule.
func (o *ruleOut) selID() uint64 {
	if o.sel == 0 {
		return 0
	}
	return o.key.Ino
}

// setExe sets the identities and symlink names of an exe rule.
func (o *ruleOut) setExe(keys []datapathFileId, names []uint64) {
	o.more, o.hasKey, o.key = nil, false, datapathFileId{}
	if len(keys) == 1 {
		o.key, o.hasKey = keys[0], true
		keys = nil
	}
	if len(keys) > 0 || len(names) > 0 {
		o.more = &ruleOutMore{exe: keys, names: names}
	}
}

// setSel sets what a selector rule selects.
func (o *ruleOut) setSel(sel uint8, id uint64, ok bool) {
	o.sel, o.key, o.hasID = sel, datapathFileId{Ino: id}, ok
}

type destOut struct {
	key datapathDestKey // Rule is the slot, without the generation
	// ents are the node's entries, the bytes of val.E[:val.Count]: a
	// node has one or two of its 16 (a destOut is 40 bytes and a few, not
	// 160), and a string keeps destOut comparable.
	ents string
}

func newDestOut(k datapathDestKey, v datapathDestVal) destOut {
	return destOut{key: k, ents: string(unsafe.Slice((*byte)(unsafe.Pointer(&v.E)), int(v.Count)*int(unsafe.Sizeof(v.E[0]))))}
}

// val is the node's value as the map holds it.
func (d destOut) val() datapathDestVal {
	var v datapathDestVal
	v.Count = uint32(copy(unsafe.Slice((*byte)(unsafe.Pointer(&v.E)), unsafe.Sizeof(v.E)), d.ents) / int(unsafe.Sizeof(v.E[0])))
	return v
}

const (
	selCgroup = iota + 1
	selUser
	selGroup
)

// generation is what one generation of the maps holds: per rule (by slot),
// or, for a generation found in the kernel after a restart, its entries.
type generation struct {
	config  datapathConfig
	rules   *slotRules // nil for a scanned generation
	scanned *compiled
	// bound is the DNS name bindings (dns_bind.go) this generation holds
	// and their name nodes (dns_gen.go), keys without the generation.
	bound boundNodes
	// unsure says a write of bindings failed: what the maps hold is found
	// by a scan.
	unsure bool
	// slotOf is the slot of each rule of the policy compiled, by its
	// index, until the apply has made its rule table (applyLocked).
	slotOf []uint32
	// counts are the entries rules write to each map (compile counts
	// them, for makeRoom).
	counts ruleCounts
	// exeVer is the exeIDs.ver compile read the exe identities from (0:
	// unknown, as for a generation an incremental apply patched).
	exeVer uint64
}

// slotRules are a generation's ruleOuts by slot: slots are dense (handed
// out in increasing order from 1, below maxRules), so a slice indexed by
// slot, smaller and faster to look up and walk than a map at 100,000 rules.
type slotRules struct {
	bySlot []*ruleOut
	n      int
}

// get is the ruleOut of slot; nil when none (or s is nil).
func (s *slotRules) get(slot uint32) *ruleOut {
	if s == nil || int(slot) >= len(s.bySlot) {
		return nil
	}
	return s.bySlot[slot]
}

func (s *slotRules) set(slot uint32, o *ruleOut) {
	if int(slot) >= len(s.bySlot) {
		s.bySlot = slices.Grow(s.bySlot, int(slot)+1-len(s.bySlot))[:slot+1]
	}
	if s.bySlot[slot] == nil {
		s.n++
	}
	s.bySlot[slot] = o
}

// len is how many slots have a ruleOut.
func (s *slotRules) len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// all yields every slot's ruleOut, in slot order.
func (s *slotRules) all() iter.Seq2[uint32, *ruleOut] {
	return func(yield func(uint32, *ruleOut) bool) {
		if s == nil {
			return
		}
		for slot, o := range s.bySlot {
			if o != nil && !yield(uint32(slot), o) {
				return
			}
		}
	}
}

// slotSource gives rule names their stable counter slots (ruleID).
type slotSource interface {
	// known is the slot name has; it only reads, so many goroutines may
	// ask at once.
	known(name string) (uint32, bool)
	// hand gives name its slot, a new one if need be; one goroutine.
	hand(name string) uint32
}

// slotFunc is a slotSource that knows nothing ahead (tests).
type slotFunc func(name string) uint32

func (f slotFunc) known(string) (uint32, bool) { return 0, false }
func (f slotFunc) hand(name string) uint32     { return f(name) }

// compile turns a policy into a generation. slots assigns each rule name a
// stable counter slot (slot 0 is the default); a rule found unchanged, with
// the same identities, in one of prev keeps its ruleOut.
func compile(p *engine.Policy, ids identities, slots slotSource, prev ...*generation) (*generation, error) {
	if len(p.Rules) > maxRules {
		return nil, fmt.Errorf("policy has %d rules; the datapath holds at most %d", len(p.Rules), maxRules)
	}
	g := &generation{rules: &slotRules{}}
	g.config = datapathConfig{DefaultAction: uint8(p.Default), AuditMode: b2u(p.Mode == engine.ModeAudit)}
	g.config.DefaultInbound = uint8(p.DefaultInbound) // inbound (inbound_compile.go)
	// Slots are handed out in rule order; the rules are then compiled (or
	// found unchanged) a few at a time.
	slotAt := make([]uint32, len(p.Rules))
	// Names that have a slot are looked up on every CPU (100,000 map
	// lookups are ~8 ms on one); the others get theirs in rule order.
	inParallel(len(p.Rules), 1024, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			slotAt[i], _ = slots.known(p.Rules[i].Name)
		}
	})
	var stop error
	n := len(p.Rules)
	for i := range p.Rules {
		r := &p.Rules[i]
		slot := slotAt[i]
		if slot == 0 {
			slot = slots.hand(r.Name)
		}
		if slot == 0 || slot&genBit != 0 {
			stop, n = fmt.Errorf("rule %s: slot %d out of range", r.Name, slot), i
			break
		}
		slotAt[i] = slot
	}
	outs, err := compileRules(p.Rules[:n], slotAt, ids, prev)
	if err != nil {
		return nil, err
	}
	if stop != nil {
		return nil, stop
	}
	if len(slotAt) > 0 {
		g.rules.bySlot = make([]*ruleOut, 0, slices.Max(slotAt)+1)
	}
	g.slotOf = slotAt
	g.exeVer = ids.exe.ver
	for i, out := range outs {
		g.rules.set(slotAt[i], out)
		g.counts.add(out)
		switch {
		case out.sel == selCgroup && out.hasID:
			g.config.HasCgroupRules = 1
		case out.sel == selUser:
			g.config.HasUidRules = 1
		case out.sel == selGroup:
			g.config.HasGidRules = 1
		}
	}
	return g, nil
}

// compileRules takes each rule's ruleOut from prev when it is unchanged
// (or its action alone changed), and compiles the others, on as many CPUs
// as they are worth; the error is the first in rule order.
func compileRules(rules []engine.Rule, slotAt []uint32, ids identities, prev []*generation) ([]*ruleOut, error) {
	outs := make([]*ruleOut, len(rules))
	// Finding a rule unchanged reads prev and ids only: at 100,000 rules
	// it is ~25 ms of map lookups on one CPU.
	inParallel(len(rules), 1024, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			outs[i] = reuse(&rules[i], slotAt[i], ids, prev)
		}
	})
	var todo []int
	for i, o := range outs {
		if o == nil {
			todo = append(todo, i)
		}
	}
	errs := make([]error, len(todo))
	inParallel(len(todo), 128, func(lo, hi int) {
		for k := lo; k < hi; k++ {
			i := todo[k]
			outs[i], errs[k] = compileRule(&rules[i], slotAt[i], ids)
		}
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return outs, nil
}

// reuse is the ruleOut of r from prev, or one made from it when r's action
// or audit alone changed; nil when r must be compiled.
func reuse(r *engine.Rule, slot uint32, ids identities, prev []*generation) *ruleOut {
	var base *ruleOut // differs in its action or audit only
	var matched *ruleOut
	var sum ruleSum
	summed := false
	for _, pg := range prev {
		if pg == nil || pg.rules == nil {
			continue
		}
		o := pg.rules.get(slot)
		if o == nil {
			continue
		}
		if !summed {
			sum, summed = entriesSum(r), true
		}
		if o.sum != sum {
			continue
		}
		// Both generations' ruleOuts of a rule whose action alone changed
		// share their keys (withAction): the identities are compared once.
		// A generation compiled from these very exe identities holds the
		// keys they give the path the sum names: nothing to compare (three
		// lookups a rule in a map as large as the policy, 35 ms of CPU at
		// 100,000 rules).
		sameExeIDs := r.Exe != "" && pg.exeVer != 0 && pg.exeVer == ids.exe.ver
		if !sameExeIDs && !(matched != nil && o.sharesIDs(matched)) && !o.sameIDs(r, ids) {
			continue
		}
		matched = o
		if o.rule.Action == uint8(r.Action) && o.rule.Audit == b2u(r.Audit) {
			return o
		}
		if base == nil {
			base = o
		}
	}
	if base != nil {
		return base.withAction(r)
	}
	return nil
}

func compileRule(r *engine.Rule, slot uint32, ids identities) (*ruleOut, error) {
	o := &ruleOut{sum: entriesSum(r)}
	o.rule = ruleHead{
		Id:       slot, // stable: see ruleID
		Counter:  slot,
		Action:   uint8(r.Action),
		Audit:    b2u(r.Audit),
		HasDests: b2u(len(r.Allow)+len(r.Deny) > 0),
		// Unrestricted rules may create any socket kind (raw, ping...).
		Unrestricted: b2u(r.Action == engine.ActionAllow && !denies(r, engine.DirOut)),
		InOpen:       b2u(r.Action == engine.ActionAllow && !denies(r, engine.DirIn)), // inbound
		HasNames:     b2u(r.HasNames()),
	}
	if o.rule.HasDests == 1 {
		dests := map[datapathDestKey]datapathDestVal{}
		if err := compileDests(r, slot, dests); err != nil {
			return nil, err
		}
		for k, v := range dests {
			o.dests = append(o.dests, newDestOut(k, v))
		}
		// The lengths are the nodes' (stamped); here only whether there
		// are too many.
		if err := prefixLens(r, &datapathRule{}); err != nil {
			return nil, err
		}
	}
	switch {
	case r.Exe != "":
		o.setExeKeys(r.Exe, ids)
	case r.Cgroup != "":
		id, ok := ids.cgroups[engine.CleanCgroup(r.Cgroup)]
		o.setSel(selCgroup, id, ok)
	case r.User != "":
		uid, ok := ids.uids[r.User]
		if !ok {
			return nil, fmt.Errorf("rule %s: unknown user %q", r.Name, r.User)
		}
		o.setSel(selUser, uint64(uid), true)
	case r.Group != "":
		gid, ok := ids.gids[r.Group]
		if !ok {
			return nil, fmt.Errorf("rule %s: unknown group %q", r.Name, r.Group)
		}
		o.setSel(selGroup, uint64(gid), true)
	}
	return o, nil
}

// setExeKeys sets what the exe rule of path exe writes, from ids.
func (o *ruleOut) setExeKeys(exe string, ids identities) {
	if e := ids.exe.cur[exe]; e != nil && e.hasPl {
		o.where = e
	}
	var names []uint64
	for _, n := range ids.exe.cur.names(exe) {
		names = append(names, nameHash(n))
	}
	var buf [2]engine.FileID
	found := ids.exe.appendTo(buf[:0], exe)
	if len(found) == 1 { // (no list made for the usual one)
		id := found[0]
		o.key, o.hasKey = datapathFileId{Dev: id.Dev, Igen: id.Gen, Ino: id.Ino}, true
		if names != nil {
			o.more = &ruleOutMore{names: names}
		}
		return
	}
	var keys []datapathFileId
	for _, id := range found {
		keys = append(keys, datapathFileId{Dev: id.Dev, Igen: id.Gen, Ino: id.Ino})
	}
	o.setExe(keys, names)
}

// stamped is o's rule value as generation gen holds it.
func (o *ruleOut) stamped(gen uint32) datapathRule {
	h := o.rule
	dr := datapathRule{Id: h.Id | gen<<31, Counter: h.Counter, Action: h.Action, Audit: h.Audit, HasDests: h.HasDests,
		Unrestricted: h.Unrestricted, HasNames: h.HasNames, InOpen: h.InOpen}
	// The distinct prefix lengths of the nodes, per family, longest first:
	// those of the rule's address entries (compileDests makes a node per
	// distinct prefix; prefixLens says the same of the rule).
	for _, d := range o.dests {
		n, lens := &dr.Nlens4, &dr.Lens4
		if d.key.Family == 6 {
			n, lens = &dr.Nlens6, &dr.Lens6
		}
		if !slices.Contains(lens[:*n], d.key.Plen) && int(*n) < len(lens) {
			lens[*n] = d.key.Plen
			*n++
		}
	}
	slices.SortFunc(dr.Lens4[:dr.Nlens4], func(a, b uint8) int { return int(b) - int(a) })
	slices.SortFunc(dr.Lens6[:dr.Nlens6], func(a, b uint8) int { return int(b) - int(a) })
	return dr
}

// pathKey is o's path entry key in generation gen, if it has one.
func (o *ruleOut) pathKey(gen uint32) (datapathPathKey, bool) {
	pl, ok := o.place()
	if !ok {
		return datapathPathKey{}, false
	}
	return pathKey(pl, gen), true
}

// withAction is o for r, which differs from o's rule in its action or
// audit only: what compileRule gives for r, sharing o's keys and nodes.
func (o *ruleOut) withAction(r *engine.Rule) *ruleOut {
	n := *o
	n.rule.Action = uint8(r.Action)
	n.rule.Audit = b2u(r.Audit)
	n.rule.Unrestricted = b2u(r.Action == engine.ActionAllow && !denies(r, engine.DirOut))
	n.rule.InOpen = b2u(r.Action == engine.ActionAllow && !denies(r, engine.DirIn))
	return &n
}

// sharesIDs says whether o holds the very identity keys of m (one made
// from the other by withAction): sameIDs then answers the same for both.
func (o *ruleOut) sharesIDs(m *ruleOut) bool {
	return o.samePlace(m) && o.key == m.key && o.hasKey == m.hasKey && o.more == m.more &&
		o.sel == m.sel && o.hasID == m.hasID
}

// sameIDs says whether o's keys are those of r's selector with ids.
func (o *ruleOut) sameIDs(r *engine.Rule, ids identities) bool {
	switch {
	case r.Exe != "":
		var buf [2]engine.FileID
		known := ids.exe.appendTo(buf[:0], r.Exe)
		exe := o.exe()
		if len(known) != len(exe) {
			return false
		}
		for i, id := range known {
			if exe[i] != (datapathFileId{Dev: id.Dev, Igen: id.Gen, Ino: id.Ino}) {
				return false
			}
		}
		pl, ok := ids.exe.cur.place(r.Exe)
		if opl, has := o.place(); ok != has || ok && opl != pl {
			return false
		}
		names := ids.exe.cur.names(r.Exe)
		oNames := o.names()
		if len(names) != len(oNames) {
			return false
		}
		for i, n := range names {
			if oNames[i] != nameHash(n) {
				return false
			}
		}
		return true
	case r.Cgroup != "":
		id, ok := ids.cgroups[engine.CleanCgroup(r.Cgroup)]
		return ok == o.hasID && id == o.selID()
	case r.User != "":
		return uint64(ids.uids[r.User]) == o.selID()
	case r.Group != "":
		return uint64(ids.gids[r.Group]) == o.selID()
	}
	return true
}

// ruleSum is a 128-bit digest of what a policy says of a rule but for its
// action, audit and lines (entriesSum): all a ruleOut keeps of its rule to
// tell it unchanged at the next apply. A copy of the rule (144 bytes and its
// lists) was 14 MB at 100,000 rules; a pointer into the policy would keep
// every policy a generation was compiled from alive.
type ruleSum [2]uint64

// sumSeeds are this process's: a sum is only compared with sums it made.
var sumSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

// entriesSum digests r's name, selector and destination entries (every
// field of an entry but its line: a name or a direction changes what is
// compiled as much as a prefix does). Two rules with equal sums say the
// same but for their action and audit, unless two independent 64-bit
// hashes collide at once (2^-128; no one picks the seeds).
func entriesSum(r *engine.Rule) ruleSum {
	// The rule is encoded once and each seed hashes the encoding whole:
	// writing its fields into a maphash.Hash, one small Write each, twice,
	// cost ~450 ns a rule, and an apply sums every rule of the policy.
	var stack [256]byte
	b := stack[:0]
	for _, s := range []string{r.Name, r.Exe, r.Cgroup, r.User, r.Group} {
		b = appendString(b, s)
	}
	for _, list := range [][]engine.Dest{r.Allow, r.Deny} {
		b = binary.LittleEndian.AppendUint64(b, uint64(len(list)))
		for _, d := range list {
			a := d.Prefix.Addr().As16()
			b = append(b, a[:]...)
			b = binary.LittleEndian.AppendUint64(b, uint64(d.Prefix.Bits()+1)<<1|uint64(b2u(d.Prefix.Addr().Is4())))
			b = appendString(b, d.Name)
			b = binary.LittleEndian.AppendUint64(b, uint64(d.PortLo)|uint64(d.PortHi)<<16|uint64(d.Proto)<<32|uint64(d.Dir)<<40)
		}
	}
	return ruleSum{maphash.Bytes(sumSeeds[0], b), maphash.Bytes(sumSeeds[1], b)}
}

// appendString appends s with its length, so that no two lists of strings
// encode to the same bytes.
func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

// equal says whether two ruleOuts write the same entries.
func (o *ruleOut) equal(p *ruleOut) bool {
	if o == p {
		return true
	}
	return o.rule == p.rule && sameSlice(o.exe(), p.exe()) && o.samePlace(p) &&
		sameSlice(o.names(), p.names()) && o.sel == p.sel && o.selID() == p.selID() &&
		o.hasID == p.hasID && sameSlice(o.dests, p.dests)
}

// add puts o's entries, stamped with gen, in the flat view c.
func (o *ruleOut) add(c *compiled, gen uint32) {
	dr := o.stamped(gen)
	for _, id := range o.exe() {
		c.exe[datapathExeKey{Id: id, Gen: gen}] = dr
	}
	if k, ok := o.pathKey(gen); ok {
		c.paths[k] = dr
	}
	for _, h := range o.names() {
		c.named[datapathNameKey{Hash: h, Gen: gen}] = dr
	}
	if o.hasID {
		k := datapathIdKey{Id: o.selID(), Gen: gen}
		switch o.sel {
		case selCgroup:
			c.cgroups[k] = dr
		case selUser:
			c.uids[k] = dr
		case selGroup:
			c.gids[k] = dr
		}
	}
	for _, d := range o.dests {
		k := d.key
		k.Rule |= gen << 31
		c.dests[k] = d.val()
	}
}

// flat is every entry of the generation as gen, in rule order where two
// rules would write one key (the later one wins, as before).
func (g *generation) flat(p *engine.Policy, slotOf func(string) (uint32, bool), gen uint32) *compiled {
	if g.rules == nil {
		return g.scanned
	}
	c := emptyCompiled()
	c.config = g.config
	for i := range p.Rules {
		if slot, ok := slotOf(p.Rules[i].Name); ok {
			if o := g.rules.get(slot); o != nil {
				o.add(c, gen)
			}
		}
	}
	g.bound.addTo(c, gen) // DNS name bindings (dns_gen.go)
	return c
}

// writeRules turns generation gen of the maps from old into g, rule by
// rule: only the entries of rules whose ruleOut differs are written, and
// only the keys they no longer have are deleted. ok is false, and nothing
// written, when a changed rule shares a key with a rule that did not change
// (an identity a rule keeps from a replaced file that is now another
// rule's): the full comparison decides those.
func (b *Backend) writeRules(old, g *generation, gen uint32) (ok bool, err error) {
	if done, err := b.writeSameKeys(old, g, gen); done || err != nil {
		return true, err
	}
	gone, now := emptyCompiled(), emptyCompiled()
	changed := map[uint32]bool{}
	for slot, n := range g.rules.all() {
		o := old.rules.get(slot)
		if o != nil && o.equal(n) {
			continue
		}
		changed[slot] = true
		if o != nil {
			o.add(gone, gen)
		}
		n.add(now, gen)
	}
	for slot, o := range old.rules.all() {
		if g.rules.get(slot) == nil {
			o.add(gone, gen)
		}
	}
	b.boundDiff(old, g, gen, gone, now) // DNS name bindings (dns_bind.go)
	if len(changed) == 0 && len(now.dests)+len(gone.dests)+len(now.binds)+len(gone.binds)+len(gone.exe)+len(gone.paths)+len(gone.named)+len(gone.cgroups)+len(gone.uids)+len(gone.gids) == 0 {
		return true, nil
	}
	if g.sharesKeys(changed, gen, gone, now) {
		return false, nil
	}
	return true, b.writeDiffs(gone, now)
}

// writeDiffs deletes the entries of gone that now lacks and writes those of
// now that differ, map by map.
func (b *Backend) writeDiffs(gone, now *compiled) error {
	for _, m := range []struct {
		what string
		diff func() error
	}{
		{"exe rules", func() error { return writeDiff(b.sized.ExeRules, gone.exe, now.exe) }},
		{"cgroup rules", func() error { return writeDiff(b.sized.CgroupRules, gone.cgroups, now.cgroups) }},
		{"user rules", func() error { return writeDiff(b.sized.UidRules, gone.uids, now.uids) }},
		{"group rules", func() error { return writeDiff(b.sized.GidRules, gone.gids, now.gids) }},
		{"destinations", func() error { return writeDiff(b.sized.Dests, gone.dests, now.dests) }},
		{"name bindings", func() error { return writeDiff(b.sized.NameBinds, gone.binds, now.binds) }},
		{"executable paths", func() error { return writeDiff(b.sized.PathRules, gone.paths, now.paths) }},
		{"executable names", func() error { return writeDiff(b.sized.NameRules, gone.named, now.named) }},
	} {
		if err := m.diff(); err != nil {
			return fmt.Errorf("write %s: %w", m.what, err)
		}
	}
	return nil
}

// writeSameKeys is writeRules for the usual change: the same rules (by
// slot), every changed one writing the same keys as before with other
// values (an action, an entry's ports), and no name bindings. No key is
// then deleted or created, so none can be another rule's: the values of the
// changed rules are written straight from their ruleOuts, without the maps
// of keys writeRules compares. done is false, and nothing written, for any
// other change.
func (b *Backend) writeSameKeys(old, g *generation, gen uint32) (done bool, err error) {
	if old.bound.len() != 0 || g.bound.len() != 0 || old.rules.len() != g.rules.len() {
		return false, nil
	}
	var changed []*ruleOut // old, new in turn
	for slot, n := range g.rules.all() {
		o := old.rules.get(slot)
		if o == nil || !o.sameKeys(n) {
			return false, nil
		}
		if o != n && !o.equal(n) {
			changed = append(changed, o, n)
		}
	}
	var w ruleWrites
	w.reserve(len(changed) / 2)
	for i := 0; i < len(changed); i += 2 {
		o, n := changed[i], changed[i+1]
		if o.stamped(0) != n.stamped(0) { // (the prefix lengths too)
			n.addSelectors(&w, gen)
		}
		for _, d := range n.dests {
			if od, _ := o.dest(d.key); od != d {
				k := d.key
				k.Rule |= gen << 31
				w.dests.add(k, d.val())
			}
		}
	}
	return true, w.write(b)
}

// sameKeys says whether o and n write the same keys (their values may
// differ).
func (o *ruleOut) sameKeys(n *ruleOut) bool {
	if o == n {
		return true
	}
	if !sameSlice(o.exe(), n.exe()) || !o.samePlace(n) ||
		!sameSlice(o.names(), n.names()) || o.sel != n.sel || o.selID() != n.selID() || o.hasID != n.hasID || len(o.dests) != len(n.dests) {
		return false
	}
	if len(n.dests) == 0 || unsafe.SliceData(o.dests) == unsafe.SliceData(n.dests) {
		return true // withAction shares them
	}
	for _, d := range n.dests {
		if _, ok := o.dest(d.key); !ok {
			return false
		}
	}
	return true
}

// sameSlice is slices.Equal, at once for one slice (withAction shares
// them).
func sameSlice[T comparable](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || unsafe.SliceData(a) == unsafe.SliceData(b) || slices.Equal(a, b))
}

// dest is o's node at key k (Rule without the generation).
func (o *ruleOut) dest(k datapathDestKey) (destOut, bool) {
	for _, d := range o.dests {
		if d.key == k {
			return d, true
		}
	}
	return destOut{}, false
}

// entries is keys and values for one map, written in order (a later value
// for a key wins, as in the flat view).
type entries[K, V any] struct {
	keys []K
	vals []V
}

func (b *entries[K, V]) add(k K, v V) {
	b.keys = append(b.keys, k)
	b.vals = append(b.vals, v)
}

func (b *entries[K, V]) reserve(n int) {
	b.keys, b.vals = make([]K, 0, n), make([]V, 0, n)
}

// ruleWrites is what to write to each map of a generation.
type ruleWrites struct {
	exe                 entries[datapathExeKey, datapathRule]
	paths               entries[datapathPathKey, datapathRule]
	named               entries[datapathNameKey, datapathRule]
	cgroups, uids, gids entries[datapathIdKey, datapathRule]
	dests               entries[datapathDestKey, datapathDestVal]
}

// reserve makes room for the entries of n exe rules (a key and a path
// each).
func (w *ruleWrites) reserve(n int) {
	w.exe.reserve(n)
	w.paths.reserve(n)
}

// addSelectors puts o's selector keys, stamped with gen, with its rule.
func (o *ruleOut) addSelectors(w *ruleWrites, gen uint32) {
	dr := o.stamped(gen)
	for _, id := range o.exe() {
		w.exe.add(datapathExeKey{Id: id, Gen: gen}, dr)
	}
	if k, ok := o.pathKey(gen); ok {
		w.paths.add(k, dr)
	}
	for _, h := range o.names() {
		w.named.add(datapathNameKey{Hash: h, Gen: gen}, dr)
	}
	if o.hasID {
		k := datapathIdKey{Id: o.selID(), Gen: gen}
		switch o.sel {
		case selCgroup:
			w.cgroups.add(k, dr)
		case selUser:
			w.uids.add(k, dr)
		case selGroup:
			w.gids.add(k, dr)
		}
	}
}

// addAll puts every entry of o, stamped with gen.
func (o *ruleOut) addAll(w *ruleWrites, gen uint32) {
	o.addSelectors(w, gen)
	for _, d := range o.dests {
		k := d.key
		k.Rule |= gen << 31
		w.dests.add(k, d.val())
	}
}

// write writes w to the maps, the executables' paths alongside the rest:
// thousands of entries each (one per exe rule), in maps the kernel locks
// apart, so two CPUs write them in about the time of one.
func (w *ruleWrites) write(b *Backend) error {
	type job struct {
		what  string
		write func() error
	}
	jobs := []job{
		{"exe rules", func() error { return batchUpdateSlices(b.sized.ExeRules, w.exe.keys, w.exe.vals) }},
		{"cgroup rules", func() error { return batchUpdateSlices(b.sized.CgroupRules, w.cgroups.keys, w.cgroups.vals) }},
		{"user rules", func() error { return batchUpdateSlices(b.sized.UidRules, w.uids.keys, w.uids.vals) }},
		{"group rules", func() error { return batchUpdateSlices(b.sized.GidRules, w.gids.keys, w.gids.vals) }},
		{"destinations", func() error { return batchUpdateSlices(b.sized.Dests, w.dests.keys, w.dests.vals) }},
		{"executable names", func() error { return batchUpdateSlices(b.sized.NameRules, w.named.keys, w.named.vals) }},
		{"executable paths", func() error { return batchUpdateSlices(b.sized.PathRules, w.paths.keys, w.paths.vals) }},
	}
	run := func(jobs []job) error {
		for _, j := range jobs {
			if err := j.write(); err != nil {
				return fmt.Errorf("write %s: %w", j.what, err)
			}
		}
		return nil
	}
	side := jobs[len(jobs)-1:]
	if len(w.paths.keys) < parallelMin {
		return run(jobs)
	}
	errc := make(chan error, 1)
	go func() { errc <- run(side) }()
	err := run(jobs[:len(jobs)-1])
	return errors.Join(err, <-errc)
}

// add counts the entries o writes to each selector map and to dests.
func (n *ruleCounts) add(o *ruleOut) {
	n.exe += len(o.exe())
	if o.where != nil {
		n.paths++
	}
	n.named += len(o.names())
	if o.hasID {
		switch o.sel {
		case selCgroup:
			n.cgroups++
		case selUser:
			n.uids++
		case selGroup:
			n.gids++
		}
	}
	n.dests += len(o.dests)
}

// ruleCounts are entry counts by map.
type ruleCounts struct {
	exe, paths, named, cgroups, uids, gids, dests int
}

// makeRoom makes room, before a write of generation gen, for c's entries
// beside what the other generation holds (when known), and puts in place
// the counter chunks of the slots this apply hands out: all at once, so
// that the RCU grace periods every growth waits for overlap (sized.go,
// counters.go). A count too low costs nothing but the growth a full map
// gets anyway.
func (b *Backend) makeRoom(c *generation, gen uint32) error {
	if c.rules == nil {
		return nil
	}
	n := c.counts
	if o := b.gens[gen^1]; o != nil && o.rules != nil {
		m := o.counts
		n = ruleCounts{n.exe + m.exe, n.paths + m.paths, n.named + m.named, n.cgroups + m.cgroups, n.uids + m.uids, n.gids + m.gids, n.dests + m.dests}
	}
	return makeRoom(b.sized.needs(n, b.slots.len()))
}

// needs is what makeRoom is given for n entries and names counter names.
func (s *sizedMaps) needs(n ruleCounts, names int) map[*sizedMap]int {
	return map[*sizedMap]int{s.ExeRules: n.exe, s.PathRules: n.paths, s.NameRules: n.named,
		s.CgroupRules: n.cgroups, s.UidRules: n.uids, s.GidRules: n.gids, s.Dests: n.dests,
		s.CounterNames: names}
}

// makeRoomAhead starts growing, before p's executables are resolved, the
// maps p will not fit in beside the generation in force: p's entries are
// estimated from its rules (one identity and one place per executable, one
// destination node per rule with addresses, as a policy's first apply
// finds) and the growth, a grace period of the kernel's, runs while the
// apply resolves. It returns how to wait for it; nil when nothing grows.
// makeRoom checks again with the compiled counts: an estimate too low
// costs the growth it would have cost anyway.
func (b *Backend) makeRoomAhead(p *engine.Policy) <-chan error {
	word, err := b.activeWord()
	if err != nil {
		return nil
	}
	var in ruleCounts
	if g := b.gens[word&1]; g != nil && g.rules != nil {
		in = g.counts
	}
	chunks := b.chunksAhead(p)
	need := b.sizedAhead(p, in)
	if len(need) == 0 && len(chunks) == 0 {
		return nil
	}
	done := make(chan error, 1)
	go func() {
		placed := make(chan error, 1)
		var made []*ebpf.Map
		go func() {
			var err error
			if len(chunks) > 0 {
				made, err = b.counters.place(chunks)
			}
			placed <- err
		}()
		err := makeRoom(need)
		if perr := <-placed; perr == nil && len(chunks) > 0 {
			b.aheadChunks = func() { b.counters.install(chunks, made) }
		}
		done <- err
	}()
	return done
}

// chunksAhead lists the counter chunks not in place that slotFor will hand
// slots in when compile hands p's new rule names theirs: slotFor's walk,
// without handing anything (the chunks in place, hence its limit, stay as
// they are until compile is done).
func (b *Backend) chunksAhead(p *engine.Policy) []uint32 {
	limit := b.counters.limit()
	if uint64(b.nextSlot)+uint64(len(p.Rules))+uint64(b.slots.len()) < uint64(limit) &&
		!slices.Contains(b.counters.chunks[:limit>>counterChunkBits], nil) {
		return nil // every slot it can hand is in the chunks in place
	}
	if b.policy != nil && sameNames(b.policy, p) {
		return nil // no new name: no slot to hand
	}
	next, live := b.nextSlot, b.slots.len()
	named := map[string]bool{} // names handed a slot in this walk
	taken := map[uint32]bool{}
	want := map[uint32]bool{}
	var out []uint32
	for i := range p.Rules {
		name := p.Rules[i].Name
		if _, ok := b.slots.get(name); ok || named[name] {
			continue
		}
		for tries := 0; ; tries++ {
			if tries > maxRules {
				return nil // slotFor decides
			}
			s := next
			next++
			if next > maxRules || next >= limit && 2*(live+1) <= int(limit) {
				next = 1
			}
			if taken[s] {
				continue
			}
			if old, used := b.slotName.get(s); used {
				if _, ok := b.slots.get(old); ok || named[old] {
					continue
				}
			}
			taken[s], named[name] = true, true
			live++
			if c := s >> counterChunkBits; int(c) < len(b.counters.chunks) && b.counters.chunks[c] == nil && !want[c] {
				want[c] = true
				out = append(out, c)
			}
			break
		}
	}
	return out
}

// sizedAhead is makeRoomAhead's estimate of the policy-sized maps p needs
// beside in (the generation in force), those too small for it only.
func (b *Backend) sizedAhead(p *engine.Policy, in ruleCounts) map[*sizedMap]int {
	// One pass over the rules, no lookups: what each kind adds.
	est := in
	for i := range p.Rules {
		r := &p.Rules[i]
		switch {
		case r.Exe != "":
			est.exe++
			est.paths++
		case r.Cgroup != "":
			est.cgroups++
		case r.User != "":
			est.uids++
		case r.Group != "":
			est.gids++
		}
		if hasAddrDest(r.Allow) || hasAddrDest(r.Deny) {
			est.dests++
		}
	}
	// Counter names: every rule's at most; the new ones counted only when
	// that is too many.
	names := b.slots.len() + len(p.Rules)
	if uint64(names) > uint64(b.sized.CounterNames.MaxEntries()) {
		names = b.slots.len()
		if b.policy != nil && sameNames(b.policy, p) {
			return b.sizedNeed(est, names) // no new name: no lookups
		}
		for i := range p.Rules {
			if _, ok := b.slots.get(p.Rules[i].Name); !ok {
				names++
			}
		}
	}
	return b.sizedNeed(est, names)
}

// sizedNeed is what sizedAhead gives for est entries and names counter
// names: the maps too small for them.
func (b *Backend) sizedNeed(est ruleCounts, names int) map[*sizedMap]int {
	need := b.sized.needs(est, names)
	for s, k := range need {
		if uint64(k) <= uint64(s.inner.MaxEntries()) {
			delete(need, s)
		}
	}
	return need
}

// sameNames says whether a and b name their rules alike, in the same
// order: string compares in order cost a tenth of the map lookups that
// would tell which of b's names are new.
func sameNames(a, b *engine.Policy) bool {
	if len(a.Rules) != len(b.Rules) {
		return false
	}
	for i := range a.Rules {
		if a.Rules[i].Name != b.Rules[i].Name {
			return false
		}
	}
	return true
}

// joinRoomAhead waits for makeRoomAhead's growth, if one runs, and records
// the chunks it put in place.
func (b *Backend) joinRoomAhead() error {
	if b.roomAhead == nil {
		return nil
	}
	err := <-b.roomAhead
	b.roomAhead = nil
	if b.aheadChunks != nil {
		b.aheadChunks()
		b.aheadChunks = nil
	}
	return err
}

func hasAddrDest(ds []engine.Dest) bool {
	for _, d := range ds {
		if !d.IsName() {
			return true
		}
	}
	return false
}

// writeFresh fills generation gen, which holds nothing, with g: every
// entry in rule order (what flat gives, without
// its maps).
func (b *Backend) writeFresh(g *generation, p *engine.Policy, gen uint32) error {
	var w ruleWrites
	w.reserve(len(p.Rules))
	for i := range p.Rules {
		if slot, ok := b.slotOf(p.Rules[i].Name); ok {
			if o := g.rules.get(slot); o != nil {
				o.addAll(&w, gen)
			}
		}
	}
	return w.write(b)
}

// sharesKeys says whether a rule of g that did not change writes one of
// the selector keys the changed rules delete (in gone, not in now) or
// create (in now, not in gone). A key both have is only rewritten.
func (g *generation) sharesKeys(changed map[uint32]bool, gen uint32, gone, now *compiled) bool {
	t := emptyCompiled()
	toggled := toggle(gone.exe, now.exe, t.exe) + toggle(gone.paths, now.paths, t.paths) + toggle(gone.named, now.named, t.named) +
		toggle(gone.cgroups, now.cgroups, t.cgroups) + toggle(gone.uids, now.uids, t.uids) + toggle(gone.gids, now.gids, t.gids)
	if toggled == 0 {
		return false
	}
	for slot, o := range g.rules.all() {
		if changed[slot] {
			continue
		}
		for _, id := range o.exe() {
			if _, ok := t.exe[datapathExeKey{Id: id, Gen: gen}]; ok {
				return true
			}
		}
		if k, ok := o.pathKey(gen); ok {
			if _, ok := t.paths[k]; ok {
				return true
			}
		}
		for _, h := range o.names() {
			if _, ok := t.named[datapathNameKey{Hash: h, Gen: gen}]; ok {
				return true
			}
		}
		if o.hasID {
			k := datapathIdKey{Id: o.selID(), Gen: gen}
			var m map[datapathIdKey]datapathRule
			switch o.sel {
			case selCgroup:
				m = t.cgroups
			case selUser:
				m = t.uids
			case selGroup:
				m = t.gids
			}
			if _, ok := m[k]; ok {
				return true
			}
		}
	}
	return false
}

// toggle puts in out the keys only one of a and b has, and counts them.
func toggle[K comparable, V any](a, b map[K]V, out map[K]V) int {
	for k, v := range a {
		if _, ok := b[k]; !ok {
			out[k] = v
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			out[k] = v
		}
	}
	return len(out)
}
