//go:build linux

package linux

import (
	"slices"
	"testing"

	"github.com/cilium/ebpf"
)

// TestChunksInPlace: the slots of an array of maps that hold a map, and
// their ids, skipping the empty ones.
func TestChunksInPlace(t *testing.T) {
	requireKernel(t)
	inner := &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}
	outer, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.ArrayOfMaps, KeySize: 4, ValueSize: 4, MaxEntries: 256, InnerMap: inner})
	if err != nil {
		t.Fatal(err)
	}
	defer outer.Close()
	var want []uint32
	for _, i := range []uint32{0, 5, 255} {
		m, err := ebpf.NewMap(inner)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if err := outer.Update(i, m, ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
		id, _, err := mapIDName(m)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, uint32(id))
	}
	idx, ids, err := chunksInPlace(outer)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(idx, []uint32{0, 5, 255}) || !slices.Equal(ids, want) {
		t.Fatalf("chunks in place %v ids %v, want [0 5 255] %v", idx, ids, want)
	}
}
