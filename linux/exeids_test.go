//go:build linux

package linux

import (
	"maps"
	"slices"
	"testing"

	"github.com/exewall/exewall/engine"
)

// TestExeIDsWithFound: a path's identities are those it had and the one it
// resolves to now, in that order; only paths whose list is not exactly the
// one found get a list of their own.
func TestExeIDsWithFound(t *testing.T) {
	a, b, c := engine.FileID{Ino: 1}, engine.FileID{Ino: 2}, engine.FileID{Ino: 3}
	before := exeIDsOf(map[string][]engine.FileID{
		"/same": {a}, "/replaced": {a}, "/twice": {a, b}, "/gone": {c}, "/never": nil,
	})
	paths := []string{"/same", "/replaced", "/twice", "/gone", "/never", "/new", "/new-missing"}
	found := map[string]engine.FileID{"/same": a, "/replaced": b, "/twice": c, "/new": c}
	got := before.withFound(paths, found)
	want := map[string][]engine.FileID{
		"/same": {a}, "/replaced": {a, b}, "/twice": {a, b, c}, "/gone": {c}, "/never": nil, "/new": {c}, "/new-missing": nil,
	}
	if !maps.EqualFunc(got.lists(), want, slices.Equal) {
		t.Fatalf("lists %v, want %v", got.lists(), want)
	}
	if len(got.more) != 5 { // replaced, twice, gone, never, new-missing
		t.Errorf("own lists for %v", slices.Sorted(maps.Keys(got.more)))
	}
	for _, p := range paths {
		if !got.has(p) {
			t.Errorf("%s is not one of the paths", p)
		}
	}
	if got.has("/other") || got.contains("/same", b) || !got.contains("/replaced", a) || got.len() != len(paths) {
		t.Errorf("has/contains/len wrong: len %d", got.len())
	}
	var n int
	got.each(func(engine.FileID) { n++ })
	if n != 8 {
		t.Errorf("each yields %d identities, want 8", n)
	}
	// Changed by its owner: set and del, as an incremental apply does.
	own := exeIDsOf(got.lists())
	own.set("/replaced", []engine.FileID{b})
	own.set("/same", []engine.FileID{a, c})
	own.del("/gone")
	if l := own.list("/replaced"); !slices.Equal(l, []engine.FileID{b}) {
		t.Errorf("/replaced after set: %v", l)
	}
	if l := own.list("/same"); !slices.Equal(l, []engine.FileID{a, c}) {
		t.Errorf("/same after set: %v", l)
	}
	if own.has("/gone") || !got.has("/gone") || !slices.Equal(got.list("/replaced"), []engine.FileID{a, b}) {
		t.Error("the copy's changes show in the original, or del did not")
	}
	if found["/replaced"] != b || len(found) != 4 {
		t.Error("the resolution's map was changed")
	}
}
