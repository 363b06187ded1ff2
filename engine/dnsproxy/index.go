package dnsproxy

import "hash/maphash"

// index finds a binding's slot in the table by its key: open addressing
// with linear probing over 4-byte slots (the slot's index + 1, 0: empty),
// at most 3/4 full, deletion by backward shift (no tombstones). About 5 to
// 11 bytes per binding, where a Go map of the same costs about 50. The
// hash is seeded per table: a server cannot pick addresses that collide.
type index struct {
	slots []int32
	n     int
	seed  maphash.Seed
}

func newIndex() index { return index{seed: maphash.MakeSeed()} }

func (x *index) home(k key) int { return int(maphash.Comparable(x.seed, k)) & (len(x.slots) - 1) }

// find returns the slot holding k's record, or -1.
func (x *index) find(recs []rec, k key) int {
	if len(x.slots) == 0 {
		return -1
	}
	mask := len(x.slots) - 1
	for j := x.home(k); ; j = (j + 1) & mask {
		s := x.slots[j]
		if s == 0 {
			return -1
		}
		if recs[s-1].k == k {
			return j
		}
	}
}

func (x *index) get(recs []rec, k key) (int32, bool) {
	if j := x.find(recs, k); j >= 0 {
		return x.slots[j] - 1, true
	}
	return 0, false
}

// put adds record i under its key (not in the index yet).
func (x *index) put(recs []rec, i int32) {
	if (x.n+1)*4 > len(x.slots)*3 {
		x.grow(recs)
	}
	mask := len(x.slots) - 1
	j := x.home(recs[i].k)
	for x.slots[j] != 0 {
		j = (j + 1) & mask
	}
	x.slots[j] = i + 1
	x.n++
}

func (x *index) grow(recs []rec) {
	old := x.slots
	x.slots = make([]int32, max(16, 2*len(old)))
	x.n = 0
	for _, s := range old {
		if s != 0 {
			x.put(recs, s-1)
		}
	}
}

// del removes k (its record still holds k), moving back the entries
// after it that would otherwise no longer be found.
func (x *index) del(recs []rec, k key) {
	i := x.find(recs, k)
	if i < 0 {
		return
	}
	x.n--
	mask := len(x.slots) - 1
	for {
		x.slots[i] = 0
		j := i
		for {
			j = (j + 1) & mask
			s := x.slots[j]
			if s == 0 {
				return
			}
			h := x.home(recs[s-1].k)
			// The entry at j stays if its home lies cyclically in (i, j].
			if i <= j && i < h && h <= j || i > j && (i < h || h <= j) {
				continue
			}
			x.slots[i] = s
			i = j
			break
		}
	}
}

// all returns the record indices in the index.
func (x *index) all() []int32 {
	out := make([]int32, 0, x.n)
	for _, s := range x.slots {
		if s != 0 {
			out = append(out, s-1)
		}
	}
	return out
}
