package dnsproxy

import (
	"container/heap"
	"net/netip"
	"slices"
	"sort"
	"time"
)

// maxNamesPerAddr bounds the names kept for one (rule, address): a CDN
// address answered for many names keeps the latest ones.
const maxNamesPerAddr = 8

type key struct {
	rule uint32
	addr netip.Addr
}

// entry is one binding: 96 bytes with its rule's LRU links inline (no
// list element), its expiry as Unix nanoseconds.
type entry struct {
	key        key
	names      []string // CNAME chain of the latest answer first, then older names
	expires    int64    // Unix ns
	prev, next *entry   // in its rule's LRU list, front: most recently answered
	dead       bool     // removed: its expiry items are stale
}

// lruList is one rule's entries, most recently answered first.
type lruList struct {
	front, back *entry
	n           int
}

func (l *lruList) pushFront(e *entry) {
	e.prev, e.next = nil, l.front
	if l.front != nil {
		l.front.prev = e
	} else {
		l.back = e
	}
	l.front = e
	l.n++
}

func (l *lruList) remove(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.front = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.back = e.prev
	}
	e.prev, e.next = nil, nil
	l.n--
}

func (l *lruList) moveToFront(e *entry) {
	if l.front == e {
		return
	}
	l.remove(e)
	l.pushFront(e)
}

// table holds the bindings in force: per rule, at most cap addresses, the
// least recently answered evicted first. Not safe for concurrent use; the
// Proxy holds its lock.
type table struct {
	cap     int
	entries map[key]*entry
	lru     map[uint32]*lruList
	exp     expiryHeap
}

func newTable(cap int) *table {
	return &table{cap: cap, entries: map[key]*entry{}, lru: map[uint32]*lruList{}}
}

// merge returns the bindings bs would put in force given what is in force
// already: the expiry never moves earlier (the kernel keeps the latest), and
// duplicate addresses within bs are folded. It changes nothing.
func (t *table) merge(bs []Binding) []Binding {
	out := make([]Binding, 0, len(bs))
	seen := map[key]int{}
	for _, b := range bs {
		k := key{b.Rule, b.Addr}
		if e, ok := t.entries[k]; ok && e.expires > b.Expires.UnixNano() {
			b.Expires = time.Unix(0, e.expires)
		}
		if i, ok := seen[k]; ok {
			if b.Expires.After(out[i].Expires) {
				out[i].Expires = b.Expires
			}
			continue
		}
		seen[k] = len(out)
		out = append(out, b)
	}
	return out
}

// insert records bs (as merge returned them) as in force and returns the
// bindings evicted to keep each rule within the cap.
func (t *table) insert(bs []Binding) (evicted []Binding) {
	for _, b := range bs {
		k := key{b.Rule, b.Addr}
		l := t.lru[b.Rule]
		if l == nil {
			l = &lruList{}
			t.lru[b.Rule] = l
		}
		e, ok := t.entries[k]
		if !ok {
			e = &entry{key: k}
			l.pushFront(e)
			t.entries[k] = e
		} else {
			l.moveToFront(e)
		}
		e.names = mergeNames(b.Names, e.names)
		if exp := b.Expires.UnixNano(); exp > e.expires || !ok {
			e.expires = exp
			heap.Push(&t.exp, expiryItem{at: exp, e: e})
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

// expire removes and returns the bindings whose expiry is not after now,
// and says when the next one expires (zero: none left).
func (t *table) expire(now time.Time) (gone []Binding, next time.Time) {
	for t.exp.Len() > 0 {
		it := t.exp[0]
		e := it.e
		if e.dead || e.expires != it.at {
			heap.Pop(&t.exp) // stale: refreshed or removed since
			continue
		}
		if it.at > now.UnixNano() {
			return gone, time.Unix(0, it.at)
		}
		heap.Pop(&t.exp)
		gone = append(gone, t.remove(e))
	}
	return gone, time.Time{}
}

func (t *table) remove(e *entry) Binding {
	l := t.lru[e.key.rule]
	l.remove(e)
	if l.n == 0 {
		delete(t.lru, e.key.rule)
	}
	delete(t.entries, e.key)
	e.dead = true
	return e.binding()
}

func (e *entry) binding() Binding {
	return Binding{Rule: e.key.rule, Names: slices.Clone(e.names), Addr: e.key.addr, Expires: time.Unix(0, e.expires)}
}

// compact rebuilds the expiry heap when stale items (left by refreshes)
// outnumber live ones, so memory stays proportional to the bindings.
func (t *table) compact() {
	if len(t.exp) <= 2*len(t.entries)+64 {
		return
	}
	t.exp = t.exp[:0]
	for _, e := range t.entries {
		t.exp = append(t.exp, expiryItem{at: e.expires, e: e})
	}
	heap.Init(&t.exp)
}

// list returns every binding in force, by rule, then address.
func (t *table) list() []Binding {
	out := make([]Binding, 0, len(t.entries))
	for _, e := range t.entries {
		out = append(out, e.binding())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Rule != out[j].Rule {
			return out[i].Rule < out[j].Rule
		}
		return out[i].Addr.Less(out[j].Addr)
	})
	return out
}

// mergeNames puts the latest chain first and keeps older names after it,
// without duplicates, at most maxNamesPerAddr.
func mergeNames(latest, old []string) []string {
	out := make([]string, 0, min(len(latest)+len(old), maxNamesPerAddr))
	for _, n := range append(slices.Clone(latest), old...) {
		if len(out) == maxNamesPerAddr {
			break
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// expiryItem is 16 bytes: an entry's expiry (Unix ns) when pushed; stale
// once the entry is removed or refreshed.
type expiryItem struct {
	at int64
	e  *entry
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
