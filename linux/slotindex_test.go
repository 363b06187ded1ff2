//go:build linux

package linux

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
)

// TestSlotIndexIsAMap: through random sets, deletes and growth, the index
// answers what a map of name to slot does, and walks exactly its entries.
func TestSlotIndexIsAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var names slotNames
	x := newSlotIndex(&names)
	want := map[string]uint32{}
	next := uint32(1)
	for step := range 200000 {
		name := fmt.Sprintf("r%d", rng.IntN(5000))
		if s, ok := want[name]; ok && rng.IntN(2) == 0 {
			x.del(name)
			delete(want, name)
			names.del(s) // (slotNames may forget it after the index does)
		} else if !ok {
			names.set(next, name)
			x.set(name, next)
			want[name] = next
			next++
		}
		if step%5003 == 0 { // room made ahead keeps what the index holds
			k := rng.IntN(20000)
			x.reserve(k)
			if 2*(x.len()+k+1) > len(x.table) {
				t.Fatalf("step %d: reserve(%d) with %d names left %d places", step, k, x.len(), len(x.table))
			}
		}
		if step%997 == 0 {
			got := maps.Collect(x.all())
			if !maps.Equal(got, want) || x.len() != len(want) {
				t.Fatalf("step %d: index holds %d names (len %d), want %d", step, len(got), x.len(), len(want))
			}
		}
		probe := fmt.Sprintf("r%d", rng.IntN(6000))
		s, ok := x.get(probe)
		if ws, wok := want[probe]; s != ws || ok != wok {
			t.Fatalf("step %d: get(%s) = %d %v, want %d %v", step, probe, s, ok, ws, wok)
		}
	}
}
