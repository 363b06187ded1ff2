//go:build linux

package linux

import (
	"slices"
	"testing"
)

// TestObjInfo: the one-call infos adoption uses say what ebpf's Info says.
func TestObjInfo(t *testing.T) {
	requireKernel(t)
	var objs socketsObjects
	if err := loadSocketsObjects(&objs, nil); err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	checked := 0
	for tag, p := range objectPrograms(&objs) {
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := info.MapIDs()
		got, err := progMapIDs(p)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
			t.Fatalf("%s: map ids %v, want %v", tag, got, want)
		}
		checked += len(got)
	}
	if checked == 0 {
		t.Fatal("no program of the object uses a map: nothing checked")
	}
	for tag, m := range objectMaps(&objs) {
		info, err := m.Info()
		if err != nil {
			t.Fatal(err)
		}
		wantID, _ := info.ID()
		id, name, err := mapIDName(m)
		if err != nil || id != wantID || name != info.Name {
			t.Fatalf("%s: id %d name %q (%v), want %d %q", tag, id, name, err, wantID, info.Name)
		}
	}
}
