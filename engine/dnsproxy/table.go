package dnsproxy

import (
	"container/heap"
	"net/netip"
	"sort"
	"strings"
	"time"
)

// maxNamesPerAddr bounds the names kept for one (rule, address): a CDN
// address answered for many names keeps the latest ones.
const maxNamesPerAddr = 8

// key is a binding's (rule, address): 20 bytes, no pointer.
type key struct {
	rule uint32
	addr [16]byte // IPv4 as IPv4-mapped
}

func mkKey(rule uint32, a netip.Addr) key { return key{rule, a.Unmap().As16()} }

// rec is one binding, 56 bytes in the table's slice: its names as one
// string (the latest CNAME chain first, then older names, joined by
// nameSep; a single name is the answer's own string, shared), its expiry
// as Unix nanoseconds, its rule's LRU links as indices.
type rec struct {
	k          key
	names      string
	expires    int64
	prev, next int32  // in its rule's LRU list (front: most recently answered); free list: next
	gen        uint32 // bumped when the slot is freed: expiry items of an older binding are stale
}

// nameSep cannot occur in a DNS name as ParseAnswer gives it.
const nameSep = "\x00"

const none = -1

// lruList is one rule's records, most recently answered first.
type lruList struct {
	front, back int32
	n           int
}

// table holds the bindings in force: per rule, at most cap addresses, the
// least recently answered evicted first. Not safe for concurrent use; the
// Proxy holds its lock.
type table struct {
	cap  int
	recs []rec
	free int32 // first free slot, linked by next
	idx  index
	lru  map[uint32]*lruList
	exp  expiryHeap
}

func newTable(cap int) *table {
	return &table{cap: cap, free: none, idx: newIndex(), lru: map[uint32]*lruList{}}
}

func (t *table) len() int { return t.idx.n }

func (t *table) pushFront(l *lruList, i int32) {
	r := &t.recs[i]
	r.prev, r.next = none, l.front
	if l.front != none {
		t.recs[l.front].prev = i
	} else {
		l.back = i
	}
	l.front = i
	l.n++
}

func (t *table) unlink(l *lruList, i int32) {
	r := &t.recs[i]
	if r.prev != none {
		t.recs[r.prev].next = r.next
	} else {
		l.front = r.next
	}
	if r.next != none {
		t.recs[r.next].prev = r.prev
	} else {
		l.back = r.prev
	}
	r.prev, r.next = none, none
	l.n--
}

// merge returns the bindings bs would put in force given what is in force
// already: the expiry never moves earlier (the kernel keeps the latest), and
// duplicate addresses within bs are folded. It changes nothing.
func (t *table) merge(bs []Binding) []Binding {
	out := make([]Binding, 0, len(bs))
	var seen map[key]int
	if len(bs) > 1 {
		seen = make(map[key]int, len(bs))
	}
	for _, b := range bs {
		k := mkKey(b.Rule, b.Addr)
		if i, ok := t.idx.get(t.recs, k); ok && t.recs[i].expires > b.Expires.UnixNano() {
			b.Expires = time.Unix(0, t.recs[i].expires)
		}
		if i, ok := seen[k]; ok {
			if b.Expires.After(out[i].Expires) {
				out[i].Expires = b.Expires
			}
			continue
		}
		if seen != nil {
			seen[k] = len(out)
		}
		out = append(out, b)
	}
	return out
}

// insert records bs (as merge returned them) as in force and returns the
// bindings evicted to keep each rule within the cap.
func (t *table) insert(bs []Binding) (evicted []Binding) {
	for _, b := range bs {
		k := mkKey(b.Rule, b.Addr)
		l := t.lru[b.Rule]
		if l == nil {
			l = &lruList{front: none, back: none}
			t.lru[b.Rule] = l
		}
		exp := b.Expires.UnixNano()
		i, ok := t.idx.get(t.recs, k)
		if !ok {
			i = t.alloc()
			t.recs[i] = rec{k: k, names: joinNames(b.Names, ""), expires: exp, gen: t.recs[i].gen}
			t.idx.put(t.recs, i)
			t.pushFront(l, i)
			heap.Push(&t.exp, expiryItem{at: exp, i: i, gen: t.recs[i].gen})
			continue
		}
		if l.front != i {
			t.unlink(l, i)
			t.pushFront(l, i)
		}
		r := &t.recs[i]
		r.names = joinNames(b.Names, r.names)
		if exp > r.expires {
			r.expires = exp
			heap.Push(&t.exp, expiryItem{at: exp, i: i, gen: r.gen})
		}
	}
	for _, b := range bs {
		l := t.lru[b.Rule]
		for l != nil && l.n > t.cap {
			evicted = append(evicted, t.remove(l.back))
		}
	}
	t.compact()
	return evicted
}

// alloc returns a free slot.
func (t *table) alloc() int32 {
	if t.free != none {
		i := t.free
		t.free = t.recs[i].next
		return i
	}
	t.recs = append(t.recs, rec{})
	return int32(len(t.recs) - 1)
}

// expire removes and returns the bindings whose expiry is not after now,
// and says when the next one expires (zero: none left).
func (t *table) expire(now time.Time) (gone []Binding, next time.Time) {
	for t.exp.Len() > 0 {
		it := t.exp[0]
		if !t.current(it) {
			heap.Pop(&t.exp) // stale: refreshed or removed since
			continue
		}
		if it.at > now.UnixNano() {
			return gone, time.Unix(0, it.at)
		}
		heap.Pop(&t.exp)
		gone = append(gone, t.remove(it.i))
	}
	return gone, time.Time{}
}

// current reports whether an expiry item is its binding's expiry now.
func (t *table) current(it expiryItem) bool {
	r := &t.recs[it.i]
	return r.gen == it.gen && r.expires == it.at
}

// remove takes slot i out and returns its binding.
func (t *table) remove(i int32) Binding {
	r := &t.recs[i]
	b := r.binding()
	l := t.lru[r.k.rule]
	t.unlink(l, i)
	if l.n == 0 {
		delete(t.lru, r.k.rule)
	}
	t.idx.del(t.recs, r.k)
	*r = rec{gen: r.gen + 1, prev: none, next: t.free}
	t.free = i
	return b
}

// removeIf removes and returns the bindings of the rules drop says yes to.
func (t *table) removeIf(drop func(rule uint32) bool) []Binding {
	var gone []Binding
	for _, i := range t.idx.all() {
		if drop(t.recs[i].k.rule) {
			gone = append(gone, t.remove(i))
		}
	}
	return gone
}

func (r *rec) binding() Binding {
	var names []string
	if r.names != "" {
		names = strings.Split(r.names, nameSep)
	}
	return Binding{Rule: r.k.rule, Names: names,
		Addr: netip.AddrFrom16(r.k.addr).Unmap(), Expires: time.Unix(0, r.expires)}
}

// compact rebuilds the expiry heap when stale items (left by refreshes)
// outnumber live ones, so memory stays proportional to the bindings.
func (t *table) compact() {
	if len(t.exp) <= 2*t.idx.n+64 {
		return
	}
	t.exp = make(expiryHeap, 0, t.idx.n+t.idx.n/4)
	for _, i := range t.idx.all() {
		t.exp = append(t.exp, expiryItem{at: t.recs[i].expires, i: i, gen: t.recs[i].gen})
	}
	heap.Init(&t.exp)
}

// list returns every binding in force, by rule, then address.
func (t *table) list() []Binding {
	out := make([]Binding, 0, t.idx.n)
	for _, i := range t.idx.all() {
		out = append(out, t.recs[i].binding())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Rule != out[j].Rule {
			return out[i].Rule < out[j].Rule
		}
		return out[i].Addr.Less(out[j].Addr)
	})
	return out
}

// joinNames puts the latest chain first and keeps the older names (joined
// by nameSep) after it, without duplicates, at most maxNamesPerAddr. A
// single name comes back as it is (no copy).
func joinNames(latest []string, old string) string {
	if old == "" && len(latest) == 1 {
		return latest[0]
	}
	out := make([]string, 0, maxNamesPerAddr)
	add := func(n string) {
		if len(out) < maxNamesPerAddr && n != "" {
			for _, o := range out {
				if o == n {
					return
				}
			}
			out = append(out, n)
		}
	}
	for _, n := range latest {
		add(n)
	}
	if old != "" {
		for n := range strings.SplitSeq(old, nameSep) {
			add(n)
		}
	}
	if len(out) == 1 {
		return out[0]
	}
	return strings.Join(out, nameSep)
}

// expiryItem is 16 bytes: a binding's expiry (Unix ns) when pushed, its
// slot and the slot's generation; stale once the binding is removed or
// refreshed.
type expiryItem struct {
	at  int64
	i   int32
	gen uint32
}

type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
