//go:build linux

package linux

import (
	"encoding/binary"
	"net/netip"
)

// DNS name bindings in the two generations of the maps: each generation
// records the bindings it holds and the name nodes they point at
// (generation.bound), so that an apply that writes only the rules that
// changed still leaves every binding in force in the generation it switches
// to, and removes those that no longer hold.
//
// In the kernel a binding is an element of name_binds, (rule id, family,
// address) -> the index of a name node, and the node a dests entry of the
// rule under family DEST_NAME_NODE (bpf/exewall.h, struct bind_key).

// boundDiff adds to gone (what generation gen holds now, per key) and now
// (what it must hold) the name nodes of old and g, and to now the bindings
// of g (what gen holds of them is the backend's record: Backend.boundDiff).
// Bindings and nodes have keys of their own (never a rule's CIDR node), so
// keys of rules that did not change are rewritten only where a binding
// differs.
func boundDiff(old, g *generation, gen uint32, gone, now *compiled) {
	for k, i := range g.bound.at {
		k.Rule |= gen << 31
		now.binds[k] = g.bound.val(i)
	}
	for _, m := range []*boundNodes{&old.bound, &g.bound} {
		for ref := range m.nodes {
			kk := ref.key(gen)
			if _, ok := old.bound.nodes[ref]; ok {
				gone.dests[kk] = old.bound.vals[ref.i]
			}
			if _, ok := g.bound.nodes[ref]; ok {
				now.dests[kk] = g.bound.vals[ref.i]
			}
		}
	}
}

// boundNodes is what a generation holds of the name bindings: its name
// nodes, and while an apply writes it, per binding (key Rule is the slot)
// the index of its node (at; then the backend's records keep it: a binding
// costs a bindRec in the daemon and a name_binds element in the kernel).
// The values are interned: the bindings of one rule whose names match the
// same entries share one node (136 bytes).
type boundNodes struct {
	at    map[datapathBindKey]uint32 // index into vals; nil once written
	vals  []datapathDestVal
	idx   map[datapathDestVal]uint32
	nodes map[nodeRef]struct{} // the nodes written, per rule
}

// len is how many bindings and nodes the generation is known to hold: 0
// when it has none (the applies' shortcuts that write no bindings).
func (n *boundNodes) len() int { return len(n.at) + len(n.nodes) }

// nodeRef is a rule's name node: slot and value index.
type nodeRef struct{ slot, i uint32 }

// key is the dests key of the node in generation gen.
func (r nodeRef) key(gen uint32) datapathDestKey {
	k := datapathDestKey{Rule: r.slot | gen<<31, Family: destNameNode}
	binary.NativeEndian.PutUint32(k.Addr[:4], r.i)
	return k
}

// destNameNode is DEST_NAME_NODE of bpf/exewall.h.
const destNameNode = 0

// bindKeyOf is the name_binds key of a binding of slot at addr, without the
// generation.
func bindKeyOf(slot uint32, addr netip.Addr) datapathBindKey {
	fam, _, a := famAddr(netip.PrefixFrom(addr, addr.BitLen()))
	return datapathBindKey{Rule: slot, Family: uint8(fam), Addr: a}
}

// node interns v as a node of rule slot: its index, and whether the node
// is new to this generation (to be written before a binding points at it).
func (n *boundNodes) node(slot uint32, v datapathDestVal) (uint32, bool) {
	if n.idx == nil {
		n.idx, n.nodes = map[datapathDestVal]uint32{}, map[nodeRef]struct{}{}
	}
	i, ok := n.idx[v]
	if !ok {
		i = uint32(len(n.vals))
		n.vals = append(n.vals, v)
		n.idx[v] = i
	}
	ref := nodeRef{slot, i}
	_, had := n.nodes[ref]
	n.nodes[ref] = struct{}{}
	return i, !had
}

// val is what a binding pointing at node i holds in the kernel: the
// index, and the node's entry when it has only one (bpf/exewall.h, struct
// bind_val). An index the generation never had gives a value no binding
// holds (written afresh).
func (n *boundNodes) val(i uint32) datapathBindVal {
	if int(i) >= len(n.vals) {
		return datapathBindVal{Node: i, Count: 0xff}
	}
	v := n.vals[i]
	bv := datapathBindVal{Node: i, Count: uint8(v.Count)}
	if v.Count == 1 {
		bv.E = v.E[0]
	}
	return bv
}

// set records the binding at k (Rule the slot) with node value v.
func (n *boundNodes) set(k datapathBindKey, v datapathDestVal) {
	i, _ := n.node(k.Rule, v)
	n.setIndex(k, i)
}

func (n *boundNodes) setIndex(k datapathBindKey, i uint32) {
	if n.at == nil {
		n.at = map[datapathBindKey]uint32{}
	}
	n.at[k] = i
}

// addTo puts the generation's bindings and nodes into c as generation gen.
func (n *boundNodes) addTo(c *compiled, gen uint32) {
	for k, i := range n.at {
		k.Rule |= gen << 31
		c.binds[k] = n.val(i)
	}
	for ref := range n.nodes {
		c.dests[ref.key(gen)] = n.vals[ref.i]
	}
}
