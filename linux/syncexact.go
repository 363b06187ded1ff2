//go:build linux

package linux

import (
	"errors"
	"maps"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/exewall/exewall/engine"
)

// holdsExactly says whether generation gen of the maps holds exactly the
// entries of g, without building either side: each entry the kernel holds
// names its rule's slot (the rule id in its value or key), so it is checked
// against that rule's ruleOut as it is read, and the entries so found are
// counted against what the rules have. At 100,000 rules the two sides as Go
// maps were 130 MB of garbage every periodic sync, which kept a daemon at
// twice its resident size. p, when given, is the policy g must be exactly
// (the generation in force); the idle one is checked against its own
// rules. false (with no error) means something differs or cannot be told
// this way (two rules with one key, a kernel without batches): the full
// comparison, which names each difference, or a scan decides.
func (b *Backend) holdsExactly(g *generation, p *engine.Policy, gen uint32) (bool, error) {
	if g.rules == nil || g.unsure {
		return false, nil
	}
	var want ruleCounts
	if p != nil {
		// Every rule of p has its own slot in g and g has no other.
		if g.rules.len() != len(p.Rules) {
			return false, nil
		}
		for i := range p.Rules {
			slot, ok := b.slotOf(p.Rules[i].Name)
			if !ok || g.rules.get(slot) == nil {
				return false, nil
			}
		}
	}
	for _, o := range g.rules.all() {
		want.add(o)
	}
	stamp := gen << 31
	// out is the ruleOut an entry of rule id (and value v) belongs to.
	out := func(id uint32, v *datapathRule) *ruleOut {
		if id&genBit != stamp {
			return nil
		}
		o := g.rules.get(id &^ genBit)
		if o == nil || v != nil && *v != o.stamped(gen) {
			return nil
		}
		return o
	}
	var have ruleCounts
	ok := true
	err := eachBatched(b.sized.ExeRules, func(k *datapathExeKey, v *datapathRule) bool {
		if k.Gen == gen {
			o := out(v.Id, v)
			ok, have.exe = o != nil && slices.Contains(o.exe(), k.Id), have.exe+1
		}
		return ok
	})
	for _, m := range []struct {
		m   kmap
		sel uint8
		n   *int
	}{{b.sized.CgroupRules, selCgroup, &have.cgroups}, {b.sized.UidRules, selUser, &have.uids}, {b.sized.GidRules, selGroup, &have.gids}} {
		if err != nil || !ok {
			break
		}
		err = eachBatched(m.m, func(k *datapathIdKey, v *datapathRule) bool {
			if k.Gen == gen {
				o := out(v.Id, v)
				ok, *m.n = o != nil && o.hasID && o.sel == m.sel && o.selID() == k.Id, *m.n+1
			}
			return ok
		})
	}
	if err == nil && ok {
		err = eachBatched(b.sized.Dests, func(k *datapathDestKey, v *datapathDestVal) bool {
			if k.Rule&genBit == stamp {
				o := out(k.Rule, nil)
				ok = o != nil && slices.ContainsFunc(o.dests, func(d destOut) bool {
					d.key.Rule |= stamp
					return d.key == *k && d.val() == *v
				})
				have.dests++
			}
			return ok
		})
	}
	if err == nil && ok {
		err = eachBatched(b.sized.PathRules, func(k *datapathPathKey, v *datapathRule) bool {
			if k.Gen == gen {
				o := out(v.Id, v)
				ok, have.paths = o != nil && o.where != nil && pathKey(o.where.pl, gen) == *k, have.paths+1
			}
			return ok
		})
	}
	if err == nil && ok {
		err = eachBatched(b.sized.NameRules, func(k *datapathNameKey, v *datapathRule) bool {
			if k.Gen == gen {
				o := out(v.Id, v)
				ok, have.named = o != nil && slices.Contains(o.names(), k.Hash), have.named+1
			}
			return ok
		})
	}
	if errors.Is(err, errNoBatches) {
		return false, nil
	}
	if err != nil || !ok || have != want {
		return false, err
	}
	// DNS name bindings are few next to the rules: compared whole.
	bound := emptyCompiled()
	b.addBound(bound, g, gen)
	held := map[datapathBindKey]datapathBindVal{}
	if err := scanMap(b.sized.NameBinds, func(k datapathBindKey) bool { return k.Rule>>31 == gen }, held); err != nil {
		return false, err
	}
	return maps.Equal(bound.binds, held), nil
}

// errNoBatches: the kernel cannot read this map in batches.
var errNoBatches = errors.New("no batch lookups")

// eachBatched calls visit with every entry of m, thousands per system call,
// until visit returns false. errNoBatches when the kernel cannot batch this
// map (or a bucket is larger than a batch); what was visited is then a
// part.
func eachBatched[K comparable, V any](m kmap, visit func(*K, *V) bool) error {
	// 512 entries a call: the periodic sync (every 30 s) scans every map
	// of a generation, and at 4096 its buffers were 5 MB of garbage per
	// sync at 100,000 rules, which stayed in the daemon's RssAnon until the
	// next collection. 200 calls instead of 25 for 100,000 entries.
	const chunk = 512
	keys, vals := make([]K, chunk), make([]V, chunk)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			if !visit(&keys[i], &vals[i]) {
				return nil
			}
		}
		// Only the end says so: a hash's batch ends early, with no error,
		// where its next bucket does not fit in what is left of it.
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil || n == 0 {
			return errNoBatches
		}
	}
}
