//go:build linux

package linux

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/exewall/exewall/engine"
)

// pairDiff says where the two generations differ when an incremental apply
// made the one in force: the slots whose ruleOut cur (in force) and idle
// (the generation before) do not share. It holds while b.gens still holds
// those two generations (compared by pointer): any other apply replaces
// them.
type pairDiff struct {
	cur, idle *generation
	slots     []uint32
}

// applyDelta is Apply for the policy in force with a few rules changed,
// removed or appended (a CLI edit, engine.RuleDelta): it resolves, compiles
// and writes only those rules, and patches what the backend keeps of the
// policy (identities, generations, names) instead of rebuilding it from
// all the rules. It keeps applyLocked's guarantees: the idle generation is
// written, then the word flips; a failure leaves the policy in force as it
// was. handled is false, with nothing changed, when the change is not one
// it takes (anything else than rules edited, name bindings in play, an
// identity of the policy in force that may have changed since it was
// resolved): the caller then applies p whole.
func (b *Backend) applyDelta(p *engine.Policy) (handled bool, err error) {
	old := b.policy
	if old == nil || len(b.bound) != 0 || len(b.unbound) != 0 || len(p.Rules) > maxRules {
		return false, nil
	}
	changed, removed, ok := engine.RuleDelta(old, p)
	if !ok {
		return false, nil
	}
	word, err := b.activeWord()
	if err != nil {
		return false, nil
	}
	cur := word & 1
	next := cur ^ 1
	g0, g1 := b.gens[cur], b.gens[next]
	if g0 == nil || g0.rules == nil || g0.unsure || g0.bound.len() != 0 ||
		g1 == nil || g1.rules == nil || g1.unsure || g1.bound.len() != 0 {
		return false, nil
	}
	for _, i := range changed {
		if p.Rules[i].HasNames() {
			return false, nil
		}
	}
	for _, j := range removed {
		if old.Rules[j].HasNames() {
			return false, nil
		}
	}
	d, ok, err := b.resolveDelta(old, p, changed, removed)
	if !ok || err != nil {
		return ok, err
	}
	return true, b.applyDeltaLocked(p, d, changed, removed, word)
}

// idsDelta is how the identities in force become those of a policy with a
// few rules changed: small holds what the changed rules select (all that
// compile reads of them), drop the rules whose keys go unless a changed
// rule selects the same.
type idsDelta struct {
	small   identities
	drop    []*engine.Rule
	epoch   uint64
	current bool
}

// ruleKey is the key identities keeps what r selects under, with its kind.
func ruleKey(r *engine.Rule) string {
	switch {
	case r.Exe != "":
		return "e" + r.Exe
	case r.Cgroup != "":
		return "c" + engine.CleanCgroup(r.Cgroup)
	case r.User != "":
		return "u" + r.User
	}
	return "g" + r.Group
}

// resolveDelta is resolve for p, which differs from the policy in force
// (old) in the rules at changed (p's) and removed (old's): what the changed
// rules select, resolved now unless the policy in force has it already.
// ok is false when the identities in force may be stale (an event since
// they were resolved, a path not watched): resolve then does all of them.
func (b *Backend) resolveDelta(old, p *engine.Policy, changed, removed []int) (idsDelta, bool, error) {
	w := b.exes
	if w == nil {
		return idsDelta{}, false, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drain()
	epoch := w.epoch
	if w.fd < 0 || w.polled || !b.ids.current || b.ids.epoch != epoch {
		return idsDelta{}, false, nil
	}
	// The paths the changed rules name: those the policy in force already
	// resolved (a rule whose action changed) are as they were, since no
	// event came; the others are resolved now.
	found := resolved{}
	var todo []string
	for _, i := range changed {
		if exe := p.Rules[i].Exe; exe != "" {
			if !b.ids.exe.has(exe) {
				todo = append(todo, exe)
			}
		}
	}
	remembered := true
	if len(todo) > 0 {
		polled := w.polled
		var err error
		if remembered, err = b.identifyFresh(todo, found); err != nil {
			w.polled = polled
			return idsDelta{}, false, nil // the full path says it again
		}
		if w.epoch != epoch {
			w.polled = polled
			return idsDelta{}, false, nil
		}
	}
	d := idsDelta{epoch: epoch, current: remembered && !w.polled}
	// small's exe says every changed path's list (more) and its entry
	// (cur, when it has one): patchIDs sets both.
	small := identities{exe: exeIDs{cur: resolved{}, more: map[string][]engine.FileID{}},
		cgroups: map[string]uint64{}, uids: map[string]uint32{}, gids: map[string]uint32{}}
	for _, exe := range todo {
		known := b.ids.exe.list(exe) // nil: the path is new to the policy
		if id, ok := found.id(exe); ok && !slices.Contains(known, id) {
			known = append(known, id)
		}
		small.exe.more[exe] = known
		if e := found[exe]; e != nil {
			small.exe.cur[exe] = e
		}
	}
	for _, i := range changed {
		r := &p.Rules[i]
		switch {
		case r.Exe != "":
			if _, done := small.exe.more[r.Exe]; done {
				continue
			}
			small.exe.more[r.Exe] = b.ids.exe.list(r.Exe)
			if e := b.ids.exe.cur[r.Exe]; e != nil {
				small.exe.cur[r.Exe] = e
			}
		case r.Cgroup != "":
			c := engine.CleanCgroup(r.Cgroup)
			if id, err := cgroupID(filepath.Join(b.cgroupRoot, c)); err == nil {
				small.cgroups[c] = id
			}
		case r.User != "":
			uid, err := engine.LookupUID(r.User)
			if err != nil {
				return d, true, fmt.Errorf("rule %s: %w", r.Name, err)
			}
			small.uids[r.User] = uid
		case r.Group != "":
			gid, err := engine.LookupGID(r.Group)
			if err != nil {
				return d, true, fmt.Errorf("rule %s: %w", r.Name, err)
			}
			small.gids[r.Group] = gid
		}
	}
	d.small = small
	// The old rules at the changed places and the removed ones: what they
	// select goes unless a changed rule selects it.
	for _, j := range removed {
		d.drop = append(d.drop, &old.Rules[j])
	}
	for _, i := range changed {
		if o := b.ruleNamed(p.Rules[i].Name); o != nil {
			d.drop = append(d.drop, o)
		}
	}
	return d, true, nil
}

// patchIDs makes the identities in force those d says, in place. The
// watcher's memo is forgotten first (the next full resolution makes
// another): a full resolution shares its maps with it, and a copy of them
// kept two of every identity after a CLI change (24 MB at 100,000 rules).
func (b *Backend) patchIDs(d idsDelta, changed []*engine.Rule) {
	w := b.exes
	w.mu.Lock()
	w.memo = nil
	w.mu.Unlock()
	ids := &b.ids
	if !ids.owned {
		ids.owned = true
		// The resolution may be the watcher's entries (shareEntries).
		ids.exe.cur, ids.exe.ver = maps.Clone(ids.exe.cur), newIDsVer()
		if ids.exe.cur == nil {
			ids.exe.cur = resolved{}
		}
		if ids.cgroups == nil {
			ids.cgroups = map[string]uint64{}
		}
		if ids.uids == nil {
			ids.uids = map[string]uint32{}
		}
		if ids.gids == nil {
			ids.gids = map[string]uint32{}
		}
	}
	keep := make(map[string]bool, len(changed))
	for _, r := range changed {
		keep[ruleKey(r)] = true
	}
	for _, r := range d.drop {
		if keep[ruleKey(r)] {
			continue
		}
		switch {
		case r.Exe != "":
			ids.exe.del(r.Exe)
		case r.Cgroup != "":
			delete(ids.cgroups, engine.CleanCgroup(r.Cgroup))
		case r.User != "":
			delete(ids.uids, r.User)
		case r.Group != "":
			delete(ids.gids, r.Group)
		}
	}
	for _, r := range changed {
		switch {
		case r.Exe != "":
			ids.exe.set(r.Exe, d.small.exe.cur[r.Exe], d.small.exe.more[r.Exe])
		case r.Cgroup != "":
			c := engine.CleanCgroup(r.Cgroup)
			if id, ok := d.small.cgroups[c]; ok {
				ids.cgroups[c] = id
			} else {
				delete(ids.cgroups, c)
			}
		case r.User != "":
			ids.uids[r.User] = d.small.uids[r.User]
		case r.Group != "":
			ids.gids[r.Group] = d.small.gids[r.Group]
		}
	}
	ids.epoch, ids.current = d.epoch, d.current
}

// applyDeltaLocked is applyLocked for a change resolveDelta resolved.
func (b *Backend) applyDeltaLocked(p *engine.Policy, d idsDelta, changed, removed []int, word uint32) error {
	old := b.policy
	ids := d.small // all compile reads: the changed rules'
	cur := word & 1
	next := cur ^ 1
	g0, g1 := b.gens[cur], b.gens[next]
	restore := b.slotsRestorer()
	// The new generation: the one in force with the changed rules'
	// ruleOuts (taken from either generation when unchanged there, as
	// compile does) and without the removed ones.
	c := &generation{config: g0.config, rules: &slotRules{bySlot: slices.Clone(g0.rules.bySlot), n: g0.rules.n}, counts: g0.counts}
	c.config.DefaultAction = uint8(p.Default)
	c.config.AuditMode = b2u(p.Mode == engine.ModeAudit)
	c.config.DefaultInbound = uint8(p.DefaultInbound)
	names := make(map[string]bool, len(changed))
	for _, i := range changed {
		names[p.Rules[i].Name] = true
	}
	var touched []uint32 // slots whose ruleOut differs from g0's
	recount := false     // a selector flag may have gone
	for _, j := range removed {
		if name := old.Rules[j].Name; !names[name] {
			if slot, ok := b.slots.get(name); ok {
				if o := c.rules.get(slot); o != nil {
					recount = recount || o.sel != 0
					c.counts.sub(o)
					c.rules.del(slot)
					touched = append(touched, slot)
				}
			}
		}
	}
	outs := make([]*ruleOut, len(changed))
	for k, i := range changed {
		r := &p.Rules[i]
		slot := b.slotFor(r.Name)
		if slot == 0 || slot&genBit != 0 {
			restore()
			return fmt.Errorf("rule %s: slot %d out of range", r.Name, slot)
		}
		out := reuse(r, slot, ids, []*generation{g1, g0})
		if out == nil {
			var err error
			if out, err = compileRule(r, slot, ids); err != nil {
				restore()
				return err
			}
		}
		outs[k] = out
		o := c.rules.get(slot)
		if o != nil {
			recount = recount || o.sel != 0
		}
		if o != out {
			if o != nil {
				c.counts.sub(o)
			}
			c.counts.add(out)
			c.rules.set(slot, out)
			touched = append(touched, slot)
		}
	}
	if recount {
		c.config.HasCgroupRules, c.config.HasUidRules, c.config.HasGidRules = 0, 0, 0
		for _, o := range c.rules.all() {
			setFlags(&c.config, o)
		}
	} else {
		for _, o := range outs {
			setFlags(&c.config, o)
		}
	}
	if err := b.bindNames(c, p); err != nil { // the resolvers (no bindings: see applyDelta)
		restore()
		return err
	}
	fail := func(err error) error {
		restore()
		b.gens[next] = nil
		if derr := b.dropBound(); derr != nil {
			b.log.Warn("remove name bindings", "err", derr)
		}
		return err
	}
	b.waitGrace()
	b.gens[next] = nil
	// Where the idle generation (g1) differs from c: where g0 differs from
	// g1, when the last apply was one of these and says so, and the slots
	// this change touched. Else the whole comparison of writeGen.
	var diff []uint32
	if d := b.pair; d != nil && d.cur == g0 && d.idle == g1 {
		diff = append(slices.Clone(d.slots), touched...)
		slices.Sort(diff)
		diff = slices.Compact(diff)
		if err := b.writeDelta(g1, c, p, next, diff); err != nil {
			return fail(err)
		}
	} else if err := b.writeGen(g1, c, p, next); err != nil {
		return fail(err)
	}
	b.boundWritten(c, next)
	b.gens[next] = c
	// Events of the new generation may be read the moment it is active:
	// publish its names first (old ones kept for events still in flight).
	rules := ruleTableOf(p, func(i int) uint32 { return b.slots.at(p.Rules[i].Name) })
	gone := map[string]*engine.Rule{}
	for _, j := range removed {
		rulesGone(old.Rules[j:j+1], func(name string) bool { return rules.named(b.slots.at(name), name) != nil }, gone)
	}
	b.names.Store(&nameSnapshot{slotName: b.slotName.view(), rules: rules, before: gone})
	if err := b.inboundBefore(p); err != nil {
		return fail(err)
	}
	if err := b.objs.Active.Update(uint32(0), word+1, ebpf.UpdateAny); err != nil {
		return fail(fmt.Errorf("switch generation: %w", err))
	}
	if err := b.dropBound(); err != nil {
		b.log.Warn("remove name bindings", "err", err)
	}
	grace := make(chan struct{})
	b.grace = grace
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		waitForReaders()
		close(grace)
	}()
	b.pair = &pairDiff{cur: c, idle: g0, slots: touched}
	// Counters of the removed rules (dropUnusedSlots, for those alone).
	for _, j := range removed {
		name := old.Rules[j].Name
		if names[name] {
			continue
		}
		if slot, ok := b.slots.get(name); ok {
			if c.rules.get(slot) == nil {
				b.retire(slot)
				b.slots.del(name)
				b.sized.CounterNames.Delete(slot)
			}
		}
	}
	// The policy is in force. Should what follows fail, the state kept of
	// it (b.policy, b.ids) is left as applyLocked leaves it, and the next
	// apply is a full one.
	afterSwitch := func(err error) error {
		b.pair, b.ids.current = nil, false
		return err
	}
	if b.repin || len(b.links) < b.wantLinks() {
		if err := b.attach(); err != nil {
			return afterSwitch(err)
		}
	}
	b.inboundAfter(p)
	if b.repin {
		if err := b.pinMaps(); err != nil {
			return afterSwitch(err)
		}
		b.endOldIdentity(false) // the cgroup hooks judge with our maps now
		b.repin = false
	}
	b.freshSlots, b.slotUndo = nil, nil
	changedRules := make([]*engine.Rule, len(changed))
	for k, i := range changed {
		changedRules[k] = &p.Rules[i]
	}
	b.policy = p
	b.patchIDs(d, changedRules)
	b.pruneLearned(b.ids)
	if n, err := b.sweepHeldSockets(c, p, next); err != nil && !errors.Is(err, errNoIters) {
		b.log.Warn("re-judge held sockets", "err", err)
	} else if n > 0 {
		b.log.Info("destroyed held sockets the policy now denies", "count", n)
	}
	b.rules = rules // (shared with the snapshot: neither changes it)
	return nil
}

// setFlags sets the selector flags of config that o needs, as compile does.
func setFlags(config *datapathConfig, o *ruleOut) {
	switch {
	case o.sel == selCgroup && o.hasID:
		config.HasCgroupRules = 1
	case o.sel == selUser:
		config.HasUidRules = 1
	case o.sel == selGroup:
		config.HasGidRules = 1
	}
}

// writeDelta is writeGen for an idle generation old that differs from g
// only at slots: writeRules for those rules alone (the others' entries are
// the same in both), then the counters of fresh slots and the config.
func (b *Backend) writeDelta(old, g *generation, p *engine.Policy, gen uint32, slots []uint32) error {
	oldSub := &generation{rules: &slotRules{}}
	newSub := &generation{rules: &slotRules{}}
	for _, s := range slots {
		if o := old.rules.get(s); o != nil {
			oldSub.rules.set(s, o)
		}
		if n := g.rules.get(s); n != nil {
			newSub.rules.set(s, n)
		}
	}
	done, err := b.writeSameKeys(oldSub, newSub, gen)
	if err != nil {
		return err
	}
	if !done {
		gone, now := emptyCompiled(), emptyCompiled()
		changed := map[uint32]bool{}
		for _, s := range slots {
			o, n := oldSub.rules.get(s), newSub.rules.get(s)
			if o != nil && n != nil && o.equal(n) {
				continue
			}
			changed[s] = true
			if o != nil {
				o.add(gone, gen)
			}
			if n != nil {
				n.add(now, gen)
			}
		}
		if g.sharesKeys(changed, gen, gone, now) {
			// A key an unchanged rule writes too: the full comparison
			// decides (nothing was written yet).
			return b.writeGen(old, g, p, gen)
		}
		if err := b.writeDiffs(gone, now); err != nil {
			return err
		}
	}
	// As writeGen: a slot handed to a new rule starts from zero and gets its
	// name before the switch.
	if err := b.writeSlots(g); err != nil {
		return err
	}
	g.config.DefaultCounter = 0
	if err := b.objs.Configs.Update(gen, g.config, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// IdentityEpoch implements engine.EpochResolver: the watcher's epoch, and
// whether every exe path of the policy in force was resolved (or
// remembered) at it, each watched, with no event since.
func (b *Backend) IdentityEpoch() (uint64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.exes
	if w == nil {
		return 0, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drain()
	return w.epoch, w.fd >= 0 && b.ids.current && b.ids.epoch == w.epoch
}

// del takes slot's ruleOut out of s.
func (s *slotRules) del(slot uint32) {
	if s.get(slot) != nil {
		s.bySlot[slot] = nil
		s.n--
	}
}

// sub takes back what add counted of o.
func (n *ruleCounts) sub(o *ruleOut) {
	var m ruleCounts
	m.add(o)
	*n = ruleCounts{n.exe - m.exe, n.paths - m.paths, n.named - m.named, n.cgroups - m.cgroups, n.uids - m.uids, n.gids - m.gids, n.dests - m.dests}
}
