//go:build linux

package linux

// DNS name bindings in the two generations of the maps: each generation
// records the host nodes it holds (generation.bound), so that an apply that
// writes only the rules that changed still leaves every binding in force in
// the generation it switches to, and removes those that no longer hold.

// boundDiff adds to gone (what generation gen holds now, per key) and now
// (what it must hold) the destination keys of the bindings of old and g,
// with the value each generation has at that key: the binding's host node,
// else the rule's own node at that prefix, else none. Keys of rules that
// did not change are thus rewritten only where a binding differs.
func boundDiff(old, g *generation, gen uint32, gone, now *compiled) {
	if len(old.bound) == 0 && len(g.bound) == 0 {
		return
	}
	var oldNodes, newNodes nodeCache
	at := func(x *generation, nodes *nodeCache, k datapathDestKey) (datapathDestVal, bool) {
		if v, ok := x.bound[k]; ok {
			return v, true
		}
		return nodes.get(x.rules[k.Rule], k)
	}
	set := func(m map[datapathDestKey]datapathDestVal, k datapathDestKey, v datapathDestVal, ok bool) {
		if ok {
			m[k] = v
		} else {
			delete(m, k)
		}
	}
	seen := map[datapathDestKey]bool{}
	for _, m := range []map[datapathDestKey]datapathDestVal{old.bound, g.bound} {
		for k := range m {
			if seen[k] {
				continue
			}
			seen[k] = true
			ov, oHas := at(old, &oldNodes, k)
			nv, nHas := at(g, &newNodes, k)
			kk := k
			kk.Rule |= gen << 31
			set(gone.dests, kk, ov, oHas)
			set(now.dests, kk, nv, nHas)
		}
	}
}

// nodeCache indexes the destination nodes of the ruleOuts asked about.
type nodeCache map[*ruleOut]map[datapathDestKey]datapathDestVal

func (c *nodeCache) get(o *ruleOut, k datapathDestKey) (datapathDestVal, bool) {
	if o == nil {
		return datapathDestVal{}, false
	}
	if *c == nil {
		*c = nodeCache{}
	}
	m := (*c)[o]
	if m == nil {
		m = make(map[datapathDestKey]datapathDestVal, len(o.dests))
		for _, d := range o.dests {
			m[d.key] = d.val
		}
		(*c)[o] = m
	}
	v, ok := m[k]
	return v, ok
}
