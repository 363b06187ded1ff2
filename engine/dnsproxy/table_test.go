package dnsproxy

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestTableSlotReuse: a slot freed by an eviction and taken by another
// binding does not inherit the evicted binding's expiry, and names merge
// latest first without duplicates.
func TestTableSlotReuse(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	addr := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	tab := newTable(1)
	tab.insert(tab.merge([]Binding{{Rule: 1, Names: []string{"a.test"}, Addr: addr("192.0.2.1"), Expires: t0.Add(time.Second)}}))
	ev := tab.insert(tab.merge([]Binding{{Rule: 1, Names: []string{"b.test"}, Addr: addr("192.0.2.2"), Expires: t0.Add(10 * time.Second)}}))
	if len(ev) != 1 || ev[0].Addr != addr("192.0.2.1") || !slices.Equal(ev[0].Names, []string{"a.test"}) {
		t.Fatalf("evicted %+v", ev)
	}
	tab.insert(tab.merge([]Binding{{Rule: 2, Names: []string{"c.test"}, Addr: addr("2001:db8::3"), Expires: t0.Add(10 * time.Second)}}))
	if gone, next := tab.expire(t0.Add(2 * time.Second)); len(gone) != 0 || !next.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("expired %+v, next %v", gone, next)
	}
	tab.insert(tab.merge([]Binding{{Rule: 2, Names: []string{"d.test", "c.test"}, Addr: addr("2001:db8::3"), Expires: t0.Add(5 * time.Second)}}))
	l := tab.list()
	if len(l) != 2 || l[1].Addr != addr("2001:db8::3") || !slices.Equal(l[1].Names, []string{"d.test", "c.test"}) || !l[1].Expires.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("list %+v", l)
	}
	if gone, next := tab.expire(t0.Add(11 * time.Second)); len(gone) != 2 || !next.IsZero() || tab.len() != 0 {
		t.Fatalf("expired %+v, next %v, %d left", gone, next, tab.len())
	}
}

// TestIndexAgainstMap: random inserts and removals find exactly what a Go
// map of the same keys holds (backward-shift deletion keeps every key
// reachable).
func TestIndexAgainstMap(t *testing.T) {
	tab := newTable(1 << 20)
	want := map[key]bool{}
	r := rand.New(rand.NewPCG(1, 2))
	addr := func(n uint32) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(n >> 8), byte(n)}) }
	t0 := time.Unix(1_000_000, 0)
	for step := range 20000 {
		n := r.Uint32N(600)
		k := mkKey(n%3, addr(n))
		if want[k] && r.IntN(2) == 0 {
			i, ok := tab.idx.get(tab.recs, k)
			if !ok {
				t.Fatalf("step %d: %v not found", step, k)
			}
			tab.remove(i)
			delete(want, k)
			continue
		}
		tab.insert([]Binding{{Rule: n % 3, Names: []string{"x.test"}, Addr: addr(n), Expires: t0}})
		want[k] = true
	}
	if tab.len() != len(want) {
		t.Fatalf("%d in the index, want %d", tab.len(), len(want))
	}
	for k := range want {
		if _, ok := tab.idx.get(tab.recs, k); !ok {
			t.Fatalf("%v not found", k)
		}
	}
	for n := range uint32(600) {
		k := mkKey(n%3, addr(n))
		if _, ok := tab.idx.get(tab.recs, k); ok != want[k] {
			t.Fatalf("%v found %v, want %v", k, ok, want[k])
		}
	}
}
