//go:build linux

package linux

import (
	"hash/maphash"
	"iter"
)

// slotIndex finds the counter slot of each rule in force by its name: an
// open-addressed table of slots, whose names are those slotNames keeps (a
// slot's name stays there while its rule is in force). 4 bytes a place in a
// table at most half full, instead of a map entry of name and slot: ~1 MB
// at 100,000 rules, not ~3. A slot's name must be in names before the slot
// is set here, and stay until it is deleted here.
type slotIndex struct {
	names *slotNames
	table []uint32 // 0: an empty place (slot 0 is the default verdict, never a rule's)
	n     int
	seed  maphash.Seed
}

func newSlotIndex(names *slotNames) *slotIndex {
	return &slotIndex{names: names, seed: maphash.MakeSeed()}
}

// find is name's place in the table, and whether it holds name (else it
// is the empty place where name would go).
func (x *slotIndex) find(name string) (int, bool) {
	if len(x.table) == 0 {
		return -1, false
	}
	mask := len(x.table) - 1
	for i := int(maphash.String(x.seed, name)) & mask; ; i = (i + 1) & mask {
		s := x.table[i]
		if s == 0 {
			return i, false
		}
		if x.names.name(s) == name {
			return i, true
		}
	}
}

// get is the slot of the rule named name, if one is in force.
func (x *slotIndex) get(name string) (uint32, bool) {
	if i, ok := x.find(name); ok {
		return x.table[i], true
	}
	return 0, false
}

// at is get's slot, 0 for none.
func (x *slotIndex) at(name string) uint32 {
	s, _ := x.get(name)
	return s
}

func (x *slotIndex) len() int { return x.n }

// set makes slot the slot of name, which names already says it is.
func (x *slotIndex) set(name string, slot uint32) {
	if 2*(x.n+1) > len(x.table) {
		x.grow()
	}
	i, ok := x.find(name)
	if !ok {
		x.n++
	}
	x.table[i] = slot
}

func (x *slotIndex) grow() { x.growTo(max(64, 2*len(x.table))) }

// reserve makes room for n more names at once (a policy's first apply):
// growing by doubling rehashed the table log2(n) times.
func (x *slotIndex) reserve(n int) {
	size := max(64, len(x.table))
	for 2*(x.n+n+1) > size {
		size *= 2
	}
	if size > len(x.table) {
		x.growTo(size)
	}
}

// growTo moves the table's slots to a table of size places (a power of two).
func (x *slotIndex) growTo(size int) {
	old := x.table
	x.table = make([]uint32, size)
	mask := len(x.table) - 1
	for _, s := range old {
		if s == 0 {
			continue
		}
		i := int(maphash.String(x.seed, x.names.name(s))) & mask
		for x.table[i] != 0 {
			i = (i + 1) & mask
		}
		x.table[i] = s
	}
}

// del forgets name's slot (names still says it when this is called).
func (x *slotIndex) del(name string) {
	i, ok := x.find(name)
	if !ok {
		return
	}
	x.n--
	// Backward shift: the places after i that probed past i move back,
	// so no lookup meets a hole before its name (no tombstones).
	mask := len(x.table) - 1
	for j := (i + 1) & mask; x.table[j] != 0; j = (j + 1) & mask {
		home := int(maphash.String(x.seed, x.names.name(x.table[j]))) & mask
		// j's entry may move to i when its home is not in (i, j].
		if (j-home)&mask >= (j-i)&mask {
			x.table[i] = x.table[j]
			i = j
		}
	}
	x.table[i] = 0
}

// all yields every name in force and its slot; the index must not change
// meanwhile.
func (x *slotIndex) all() iter.Seq2[string, uint32] {
	return func(yield func(string, uint32) bool) {
		for _, s := range x.table {
			if s != 0 && !yield(x.names.name(s), s) {
				return
			}
		}
	}
}
