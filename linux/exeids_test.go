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
	entry := func(id engine.FileID) *exeEntry { return &exeEntry{id: id, hasID: true} }
	// /new-missing has a place but no identity: not there yet.
	found := resolved{"/same": entry(a), "/replaced": entry(b), "/twice": entry(c), "/new": entry(c),
		"/new-missing": {pl: place{name: "new-missing"}, hasPl: true}}
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
	// A path cur has only a place for is none of the paths by itself.
	if placeOnly := (exeIDs{cur: resolved{"/p": {hasPl: true}}}); placeOnly.has("/p") || placeOnly.len() != 0 {
		t.Error("a path with a place and no identity counts as one with an identity")
	}
	var n int
	got.each(func(engine.FileID) { n++ })
	if n != 8 {
		t.Errorf("each yields %d identities, want 8", n)
	}
	// Changed by its owner: set and del, as an incremental apply does.
	own := exeIDsOf(got.lists())
	own.set("/replaced", entry(b), []engine.FileID{b})
	own.set("/same", entry(c), []engine.FileID{a, c})
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
	if id, _ := found.id("/replaced"); id != b || len(found) != 5 {
		t.Error("the resolution's map was changed")
	}
}

// ids, places and nameLists are what r says of each path, as maps.
func (r resolved) ids() map[string]engine.FileID {
	out := map[string]engine.FileID{}
	for p, e := range r {
		if e.hasID {
			out[p] = e.id
		}
	}
	return out
}

func (r resolved) places() map[string]place {
	out := map[string]place{}
	for p, e := range r {
		if e.hasPl {
			out[p] = e.pl
		}
	}
	return out
}

func (r resolved) nameLists() map[string][]string {
	out := map[string][]string{}
	for p, e := range r {
		if n := e.names(); n != nil {
			out[p] = n
		}
	}
	return out
}
