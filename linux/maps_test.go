//go:build linux

package linux

import (
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
)

// TestScanMapReadsEveryEntryOfALargeHash: the kernel ends a hash map's
// lookup batch early, without an error, when the next bucket does not fit
// in what is left of it. A scan that took a short batch for the end missed
// a third of 100,000 rules' entries: the periodic sync then reported them
// deleted and rewrote the whole policy every 30 s, and an apply into a
// scanned generation would have kept entries it no longer wants.
func TestScanMapReadsEveryEntryOfALargeHash(t *testing.T) {
	requireKernel(t)
	const n = 100000
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: uint32(unsafe.Sizeof(datapathExeKey{})), ValueSize: uint32(unsafe.Sizeof(datapathRule{})), MaxEntries: 1 << 17})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	keys, vals := make([]datapathExeKey, n), make([]datapathRule, n)
	for i := range n {
		keys[i] = datapathExeKey{Id: datapathFileId{Dev: 1, Ino: uint64(i + 1)}, Gen: uint32(i % 2)}
		vals[i] = datapathRule{Id: uint32(i)}
	}
	if err := putAll(m, keys, vals, n); err != nil {
		t.Fatal(err)
	}
	got := map[datapathExeKey]datapathRule{}
	if err := scanMap(m, func(k datapathExeKey) bool { return k.Gen == 1 }, got); err != nil {
		t.Fatal(err)
	}
	if len(got) != n/2 {
		t.Fatalf("scan found %d of the %d entries of generation 1", len(got), n/2)
	}
	for i := 1; i < n; i += 2 {
		if v, ok := got[keys[i]]; !ok || v != vals[i] {
			t.Fatalf("entry %d: %+v %v, want %+v", i, v, ok, vals[i])
		}
	}
}
