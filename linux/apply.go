//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

// Apply implements engine.Backend: the policy is written to the idle
// generation, the generation word is flipped, and only after an RCU grace
// period (no program still reads the old generation) is the old one cleared.
func (b *Backend) Apply(ctx context.Context, p *engine.Policy) error {
	// Rules with name entries deny encrypted DNS unless they allow it
	// (DESIGN.md "Destination entries"; the reference evaluator does too).
	p = engine.WithEncryptedDNSDenied(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	if engine.OwnedPolicy(ctx) {
		// A few rules changed: only they are resolved, compiled and
		// written (incremental.go).
		if handled, err := b.applyDelta(p); handled {
			return err
		}
	}
	// Maps a large policy outgrows are grown while its executables are
	// resolved (makeRoomAhead); joined before anything is written.
	b.roomAhead = b.makeRoomAhead(p)
	defer b.joinRoomAhead()
	ids, err := b.resolve(p)
	if err != nil {
		return err
	}
	if !engine.OwnedPolicy(ctx) {
		p = p.Clone()
	}
	return b.applyLocked(p, ids)
}

func (b *Backend) resolve(p *engine.Policy) (identities, error) {
	ids := identities{cgroups: map[string]uint64{}, uids: map[string]uint32{}, gids: map[string]uint32{}}
	paths := make([]string, 0, len(p.Rules))
	for _, r := range p.Rules {
		if r.Exe != "" {
			paths = append(paths, r.Exe)
		}
	}
	found, err := b.identifyCached(paths, &ids)
	if err != nil {
		return ids, err
	}
	if b.sameIdentities(p, found) {
		// Nobody changes them in place (patchIDs copies them first);
		// building them again cost 100,000 rules ~17 ms.
		ids.exe = b.ids.exe
	} else {
		ids.exe = b.ids.exe.withFound(paths, found)
	}
	for _, r := range p.Rules {
		switch {
		case r.Cgroup != "":
			c := engine.CleanCgroup(r.Cgroup)
			if id, err := cgroupID(filepath.Join(b.cgroupRoot, c)); err == nil {
				ids.cgroups[c] = id
			}
		case r.User != "":
			uid, err := engine.LookupUID(r.User)
			if err != nil {
				return ids, fmt.Errorf("rule %s: %w", r.Name, err)
			}
			ids.uids[r.User] = uid
		case r.Group != "":
			gid, err := engine.LookupGID(r.Group)
			if err != nil {
				return ids, fmt.Errorf("rule %s: %w", r.Name, err)
			}
			ids.gids[r.Group] = gid
		}
	}
	return ids, nil
}

// sameIdentities says whether withFound would give what is in force:
// p selects the executables of the policy in force, in the same order, and
// each resolves to an identity it already has.
func (b *Backend) sameIdentities(p *engine.Policy, found resolved) bool {
	old := b.policy
	cur := b.ids.exe.cur
	if old == nil || cur == nil && b.ids.exe.more == nil || len(old.Rules) != len(p.Rules) {
		return false
	}
	// The resolution may be the very map in force (the memo's, shared):
	// every entry is then its own, and only the paths need comparing.
	same := found.is(cur)
	for i := range p.Rules {
		exe := p.Rules[i].Exe
		if exe != old.Rules[i].Exe {
			return false
		}
		if same {
			continue
		}
		e := found[exe]
		if e == cur[exe] {
			continue // the same entry (the memo's): nothing to compare
		}
		if e != nil && e.hasID && !b.ids.exe.contains(exe, e.id) {
			return false
		}
		// The entries in force say where each file lives too.
		if !sameEntryWhere(e, cur[exe]) {
			return false
		}
	}
	return true
}

// ruleID returns the stable id of the rule in force named name, and false
// when no rule in force has that name. The id is the rule's counter slot: it
// is given when a rule name first appears, never changes while a rule of
// that name stays in the policy (whatever is inserted or removed around
// it), and is not handed to another rule while events naming it may be in
// flight (slots are allocated in increasing order, wrapping at maxRules).
// It survives a daemon restart: the pinned counter_names map keeps every
// slot's name and New reads it back (restoreSlots), so an adopting daemon
// gives every rule the id it had. It is also the datapath's rule id (with
// the generation in its top bit, see compile), so the entries of a rule that
// did not change are the same from one policy to the next. 0 is the
// default verdict, never a rule.
func (b *Backend) ruleID(name string) (uint32, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ruleNamed(name) == nil {
		return 0, false
	}
	return b.slots.get(name)
}

// slotUndo is how to take back a slot an apply handed out.
type slotUndo struct {
	slot       uint32
	name, prev string
	hadPrev    bool
}

// backendSlots are the backend's slots as compile asks for them.
type backendSlots struct{ b *Backend }

func (s backendSlots) known(name string) (uint32, bool) {
	return s.b.slots.get(name)
}

func (s backendSlots) hand(name string) uint32 { return s.b.slotFor(name) }

// slotFor returns the counter slot of a rule name, allocating slots in
// increasing order so that a slot freed by a removed rule is not handed to
// another one while events naming it may still be in flight.
func (b *Backend) slotFor(name string) uint32 {
	if s, ok := b.slots.get(name); ok {
		return s
	}
	for {
		s := b.nextSlot
		b.nextSlot++
		// Past the counter chunks in place, wrap while at most half their
		// slots are in use, else go on into a new chunk (counters.go).
		if limit := b.counters.limit(); b.nextSlot > maxRules || b.nextSlot >= limit && 2*(b.slots.len()+1) <= int(limit) {
			b.nextSlot = 1
		}
		old, used := b.slotName.get(s)
		if used {
			if _, live := b.slots.get(old); live {
				continue
			}
		}
		b.slotUndo = append(b.slotUndo, slotUndo{slot: s, name: name, prev: old, hadPrev: used})
		b.slotName.set(s, name) // first: the index finds a slot by its name
		b.slots.set(name, s)
		b.freshSlots = append(b.freshSlots, s)
		return s
	}
}

func (b *Backend) activeGen() (uint32, error) {
	word, err := b.activeWord()
	return word & 1, err
}

// activeWord is the policy word: its low bit is the generation in force, the
// rest counts switches, so that a rule the datapath cached for a thread is
// never taken for the rule of a later policy in the same generation.
func (b *Backend) activeWord() (uint32, error) {
	var word uint32
	if err := b.objs.Active.Lookup(uint32(0), &word); err != nil {
		return 0, fmt.Errorf("read active generation: %w", err)
	}
	return word, nil
}

// reserveSlots sizes what hands slots for n new rule names at once when
// none is handed yet (a policy's first apply): grown a rule at a time, the
// index, the names and the lists of an apply's slots were regrown and
// rehashed ~17 times each at 100,000 rules.
func (b *Backend) reserveSlots(n int) {
	if b.slots.len() > 0 {
		return
	}
	b.slots.reserve(n)
	b.slotName.reserve(int(b.nextSlot) + n)
	b.slotUndo = slices.Grow(b.slotUndo, n)
	b.freshSlots = slices.Grow(b.freshSlots, n)
}

// slotsRestorer starts recording the counter slots an apply hands out; the
// function it returns gives them back, newest first, when the apply fails.
func (b *Backend) slotsRestorer() func() {
	nextBefore := b.nextSlot
	b.slotUndo = b.slotUndo[:0]
	return func() {
		for i := len(b.slotUndo) - 1; i >= 0; i-- {
			u := b.slotUndo[i]
			b.slots.del(u.name)
			if u.hadPrev {
				b.slotName.set(u.slot, u.prev)
			} else {
				b.slotName.del(u.slot)
			}
		}
		b.slotUndo = b.slotUndo[:0]
		b.nextSlot = nextBefore
		b.freshSlots = b.freshSlots[:0]
	}
}

func (b *Backend) applyLocked(p *engine.Policy, ids identities) error {
	word, err := b.activeWord()
	if err != nil {
		return err
	}
	cur := word & 1
	next := cur ^ 1
	restore := b.slotsRestorer()
	b.reserveSlots(len(p.Rules))
	// Rules that did not change keep what either generation compiled.
	c, err := compile(p, ids, backendSlots{b}, b.gens[next], b.gens[cur])
	if err != nil {
		restore()
		return err
	}
	// The names events are told by: built while the maps are written
	// (100,000 rules are ~5 ms of map inserts).
	// (From what compile found, not b.slots, which a failed apply's
	// restore changes while this may still run.)
	type names struct {
		rules slotRuleTable
		gone  map[string]*engine.Rule
	}
	byNameC := make(chan names, 1)
	go func(old slotRuleTable, slotOf []uint32) {
		rules := ruleTableOf(p, func(i int) uint32 { return slotOf[i] })
		gone := map[string]*engine.Rule{}
		rulesGoneFrom(old, rules, gone)
		byNameC <- names{rules, gone}
	}(b.rules, c.slotOf)
	c.slotOf = nil
	if err := b.joinRoomAhead(); err != nil {
		b.log.Debug("grow policy maps ahead", "err", err) // makeRoom tries again
	}
	if err := b.bindNames(c, p); err != nil { // DNS names: bindings carried over
		restore()
		return err
	}
	fail := func(err error) error {
		restore()
		// The idle generation may hold part of the new policy: what it
		// holds is found by scanning it at the next apply. The active
		// generation was never touched.
		b.gens[next] = nil
		if derr := b.dropBound(); derr != nil { // their records are gone: so are they
			b.log.Warn("remove name bindings", "err", derr)
		}
		return err
	}
	// The idle generation may still be read by programs that started before
	// the last switch: wait for that switch's grace period. It still holds
	// the policy before the one in force; only what differs from the new
	// policy is written (rule ids are stable, so a rule that did not change
	// has the same entries).
	b.waitGrace()
	old := b.gens[next]
	b.gens[next] = nil
	if err := b.writeGen(old, c, p, next); err != nil {
		return fail(err)
	}
	b.boundWritten(c, next) // DNS name bindings (dns_bind.go)
	b.gens[next] = c
	// Events of the new generation may be read the moment it is active:
	// publish its names first (old ones kept for events still in flight).
	named := <-byNameC
	b.names.Store(&nameSnapshot{slotName: b.slotName.view(), rules: named.rules, before: named.gone})
	if err := b.inboundBefore(p); err != nil { // inbound.go
		return fail(err)
	}
	if err := b.objs.Active.Update(uint32(0), word+1, ebpf.UpdateAny); err != nil {
		return fail(fmt.Errorf("switch generation: %w", err))
	}
	if err := b.dropBound(); err != nil { // dns_bind.go
		b.log.Warn("remove name bindings", "err", err)
	}
	// The new policy is in force now. The old generation stays as it is:
	// the next apply writes there only what differs, after an RCU grace
	// period that runs in the background, so no caller waits for it.
	grace := make(chan struct{})
	b.grace = grace
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		waitForReaders()
		close(grace)
	}()
	b.dropUnusedSlots(c)
	if b.repin || len(b.links) < b.wantLinks() {
		if err := b.attach(); err != nil {
			return err
		}
	}
	b.inboundAfter(p)
	if b.repin {
		if err := b.pinMaps(); err != nil {
			return err
		}
		b.endOldIdentity(false) // the cgroup hooks judge with our maps now
		b.repin = false
	}
	// Written: later applies must not zero them again. (A policy's first
	// apply hands a slot per rule: what held them is not kept for the next.)
	b.freshSlots, b.slotUndo = nil, nil
	b.policy, b.ids = p, ids
	b.pruneLearned(ids)
	if n, err := b.sweepHeldSockets(c, p, next); err != nil && !errors.Is(err, errNoIters) {
		b.log.Warn("re-judge held sockets", "err", err)
	} else if n > 0 {
		b.log.Info("destroyed held sockets the policy now denies", "count", n)
	}
	b.rules = named.rules // (shared with the snapshot: neither changes it)
	return nil
}

func (b *Backend) waitGrace() {
	if b.grace != nil {
		<-b.grace
	}
}

// waitForReaders returns after an RCU grace period: every datapath program
// that read the old generation word has finished (cgroup programs run
// inside rcu_read_lock, and membarrier(GLOBAL) is synchronize_rcu()).
func waitForReaders() {
	const membarrierCmdGlobal = 1
	if _, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0); errno != 0 {
		// No membarrier (nohz_full, old kernel): programs run for
		// microseconds, so a generous sleep is an honest substitute.
		time.Sleep(50 * time.Millisecond)
	}
}

// writeGen turns generation gen from what it holds (old; nil: unknown,
// found by scanning the maps) into c: rule by rule when both are known
// (ruleout.go), else entry by entry. Entries that stay the same are not
// written.
func (b *Backend) writeGen(old, c *generation, p *engine.Policy, gen uint32) error {
	if err := b.makeRoom(c, gen); err != nil {
		return err
	}
	// The counters of the slots this apply hands out are other maps than
	// the rules': they are written meanwhile (new chunks wait for a grace
	// period, the rules' writes for the kernel's inserts).
	slots := make(chan error, 1)
	go func() { slots <- b.writeSlots(c) }()
	err := b.writeEntries(old, c, p, gen)
	err = errors.Join(err, <-slots)
	if err != nil {
		return err
	}
	c.config.DefaultCounter = 0
	if err := b.objs.Configs.Update(gen, c.config, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// writeEntries is writeGen's part in the rule maps.
func (b *Backend) writeEntries(old, c *generation, p *engine.Policy, gen uint32) error {
	done := false
	if old != nil && old.rules != nil && !old.unsure {
		var err error
		if old.rules.len() == 0 && old.bound.len() == 0 && c.bound.len() == 0 && c.rules != nil {
			// It holds nothing (a new backend's maps) and gets no name
			// bindings: no diff to make.
			done, err = true, b.writeFresh(c, p, gen)
		} else {
			done, err = b.writeRules(old, c, gen)
		}
		if err != nil {
			return err
		}
	}
	if !done {
		var have *compiled
		if old != nil && old.scanned != nil && !old.unsure {
			have = old.scanned
		} else {
			var err error
			if have, err = b.scanGen(gen); err != nil {
				return err
			}
		}
		if have.empty() && c.rules != nil {
			if err := b.writeFresh(c, p, gen); err != nil {
				return err
			}
		} else if err := b.writeFlat(have, c.flat(p, b.slotOf, gen)); err != nil {
			return err
		}
	}
	return nil
}

// writeSlots starts every slot handed to a new rule from zero (its chunk put
// in place if need be) and gives it its name, before the switch; slots of
// rules that stay are left alone.
func (b *Backend) writeSlots(c *generation) error {
	fresh := make([]uint32, 0, len(b.freshSlots))
	names := make([]datapathRuleName, 0, len(b.freshSlots))
	for _, slot := range b.freshSlots {
		if o := c.rules.get(slot); o != nil {
			fresh = append(fresh, slot)
			var rn datapathRuleName
			name, _ := b.slotName.get(slot)
			copy(rn.Name[:], toInt8(name))
			names = append(names, rn)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	if err := b.counters.reset(fresh); err != nil {
		return fmt.Errorf("reset counters: %w", err)
	}
	if err := batchUpdateSlices(b.sized.CounterNames, fresh, names); err != nil {
		return fmt.Errorf("name counters: %w", err)
	}
	return nil
}

func emptyCompiled() *compiled {
	return &compiled{exe: map[datapathExeKey]datapathRule{}, cgroups: map[datapathIdKey]datapathRule{},
		uids: map[datapathIdKey]datapathRule{}, gids: map[datapathIdKey]datapathRule{},
		dests: map[datapathDestKey]datapathDestVal{}, binds: map[datapathBindKey]datapathBindVal{}, paths: map[datapathPathKey]datapathRule{}, named: map[datapathNameKey]datapathRule{}}
}

func (c *compiled) empty() bool {
	return len(c.exe)+len(c.cgroups)+len(c.uids)+len(c.gids)+len(c.dests)+len(c.paths)+len(c.named) == 0
}

func (b *Backend) scanGen(gen uint32) (*compiled, error) {
	c := emptyCompiled()
	if err := scanMap(b.sized.PathRules, func(k datapathPathKey) bool { return k.Gen == gen }, c.paths); err != nil {
		return nil, err
	}
	if err := scanMap(b.sized.NameRules, func(k datapathNameKey) bool { return k.Gen == gen }, c.named); err != nil {
		return nil, err
	}
	if err := scanMap(b.sized.ExeRules, func(k datapathExeKey) bool { return k.Gen == gen }, c.exe); err != nil {
		return nil, err
	}
	for _, pair := range []struct {
		m   kmap
		out map[datapathIdKey]datapathRule
	}{{b.sized.CgroupRules, c.cgroups}, {b.sized.UidRules, c.uids}, {b.sized.GidRules, c.gids}} {
		if err := scanMap(pair.m, func(k datapathIdKey) bool { return k.Gen == gen }, pair.out); err != nil {
			return nil, err
		}
	}
	if err := scanMap(b.sized.NameBinds, func(k datapathBindKey) bool { return k.Rule>>31 == gen }, c.binds); err != nil {
		return nil, err
	}
	return c, scanMap(b.sized.Dests, func(k datapathDestKey) bool { return k.Rule>>31 == gen }, c.dests)
}

// writeFlat turns the maps from holding have into holding want, entry by
// entry.
func (b *Backend) writeFlat(have, want *compiled) error {
	if err := writeDiff(b.sized.ExeRules, have.exe, want.exe); err != nil {
		return fmt.Errorf("write exe rules: %w", err)
	}
	if err := writeDiff(b.sized.CgroupRules, have.cgroups, want.cgroups); err != nil {
		return fmt.Errorf("write cgroup rules: %w", err)
	}
	if err := writeDiff(b.sized.UidRules, have.uids, want.uids); err != nil {
		return fmt.Errorf("write user rules: %w", err)
	}
	if err := writeDiff(b.sized.GidRules, have.gids, want.gids); err != nil {
		return fmt.Errorf("write group rules: %w", err)
	}
	if err := writeDiff(b.sized.Dests, have.dests, want.dests); err != nil {
		return fmt.Errorf("write destinations: %w", err)
	}
	if err := writeDiff(b.sized.NameBinds, have.binds, want.binds); err != nil {
		return fmt.Errorf("write name bindings: %w", err)
	}
	if err := writeDiff(b.sized.PathRules, have.paths, want.paths); err != nil {
		return fmt.Errorf("write executable paths: %w", err)
	}
	if err := writeDiff(b.sized.NameRules, have.named, want.named); err != nil {
		return fmt.Errorf("write executable names: %w", err)
	}
	return nil
}

// slotOf is the slot of a rule name, if it has one.
func (b *Backend) slotOf(name string) (uint32, bool) {
	return b.slots.get(name)
}

// dropUnusedSlots forgets counters of rules that are gone. slotName keeps
// the name so late events are still attributed correctly.
func (b *Backend) dropUnusedSlots(c *generation) {
	var gone []string // (the index must not change while it is walked)
	for name, slot := range b.slots.all() {
		if c.rules.get(slot) == nil {
			b.retire(slot)
			gone = append(gone, name)
			b.sized.CounterNames.Delete(slot)
		}
	}
	for _, name := range gone {
		b.slots.del(name)
	}
}

// restoreSlots reads back the slot of every rule name from the pinned maps.
func (b *Backend) restoreSlots() error {
	var slot uint32
	var rn datapathRuleName
	it := b.sized.CounterNames.Iterate()
	for it.Next(&slot, &rn) {
		if slot != 0 {
			name := fromInt8(rn.Name[:])
			b.slotName.set(slot, name)
			b.slots.set(name, slot)
			b.nextSlot = max(b.nextSlot, slot+1)
		}
	}
	return it.Err()
}
