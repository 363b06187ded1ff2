package dnsproxy

import (
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
