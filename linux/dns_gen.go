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
	if old.bound.len() == 0 && g.bound.len() == 0 {
		return
	}
	var oldNodes, newNodes nodeCache
	at := func(x *generation, nodes *nodeCache, k datapathDestKey) (datapathDestVal, bool) {
		if v, ok := x.bound.get(k); ok {
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
	for _, m := range []*boundNodes{&old.bound, &g.bound} {
		for k := range m.at {
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

// boundNodes is the host nodes of a generation's name bindings. The
// values are interned: the bindings of one rule whose names match the same
// entries share one node value (136 bytes), so a binding costs its key
// and an index here.
type boundNodes struct {
	at   map[datapathDestKey]uint32 // index into vals
	vals []datapathDestVal
	idx  map[datapathDestVal]uint32
}

func (n *boundNodes) len() int { return len(n.at) }

func (n *boundNodes) get(k datapathDestKey) (datapathDestVal, bool) {
	i, ok := n.at[k]
	if !ok {
		return datapathDestVal{}, false
	}
	return n.vals[i], true
}

func (n *boundNodes) has(k datapathDestKey) bool {
	_, ok := n.at[k]
	return ok
}

func (n *boundNodes) set(k datapathDestKey, v datapathDestVal) {
	if n.at == nil {
		n.at, n.idx = map[datapathDestKey]uint32{}, map[datapathDestVal]uint32{}
	}
	i, ok := n.idx[v]
	if !ok {
		i = uint32(len(n.vals))
		n.vals = append(n.vals, v)
		n.idx[v] = i
	}
	n.at[k] = i
}

func (n *boundNodes) del(k datapathDestKey) { delete(n.at, k) }

// all yields every node.
func (n *boundNodes) all(yield func(datapathDestKey, datapathDestVal) bool) {
	for k, i := range n.at {
		if !yield(k, n.vals[i]) {
			return
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
