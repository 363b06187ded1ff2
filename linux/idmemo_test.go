//go:build linux

package linux

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/exewall/exewall/engine"
)

// TestIdentifyMemo: a resolution of the policy's paths with a path added,
// one left out, a file replaced in between or one missing answers what a
// resolution from scratch does, and only a replacement (an event) makes it
// leave the memo of the last one.
func TestIdentifyMemo(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg, noWatch)
	dir := t.TempDir()
	a, bb, c, d := clientCopy(t, dir, "a"), clientCopy(t, dir, "b"), clientCopy(t, dir, "c"), clientCopy(t, dir, "d")
	missing := filepath.Join(dir, "missing")
	check := func(paths ...string) {
		t.Helper()
		ids := identities{}
		found, err := b.identifyCached(paths, &ids)
		if err != nil {
			t.Fatal(err)
		}
		want, err := b.resolver.identifyAll(paths)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(found.ids(), want) {
			t.Errorf("resolution of %v:\n got %v\nwant %v", paths, found, want)
		}
		// The same without a memo.
		b.exes.mu.Lock()
		memo := b.exes.memo
		b.exes.memo = nil
		b.exes.mu.Unlock()
		ref, err := b.identifyCached(paths, &identities{})
		if err != nil {
			t.Fatal(err)
		}
		b.exes.mu.Lock()
		b.exes.memo = memo
		b.exes.mu.Unlock()
		if !maps.Equal(found.places(), ref.places()) || !maps.EqualFunc(found.nameLists(), ref.nameLists(), slices.Equal[[]string]) {
			t.Errorf("places and names of %v:\n got %v %v\nwant %v %v", paths, found.places(), found.nameLists(), ref.places(), ref.nameLists())
		}
	}
	epoch := func() uint64 { b.exes.mu.Lock(); defer b.exes.mu.Unlock(); return b.exes.epoch }
	check(a, bb, c)
	e0 := epoch()
	if m := b.exes.memo; m == nil || len(m.found) != 3 {
		t.Fatalf("no memo of the three paths: %+v", m)
	}
	check(a, bb, c, d) // one more
	check(a, c, d)     // one less
	check(a, c, d, missing)
	check(a, c, d, missing) // the missing one is not remembered, asked again
	if m := b.exes.memo; len(m.found) != 3 {
		t.Errorf("memo holds %d paths, want a, c and d", len(m.found))
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(d, link); err != nil {
		t.Fatal(err)
	}
	check(a, c, d, link) // a symlink: its names
	check(a, c, link)
	if epoch() != e0 {
		t.Errorf("the epoch moved without an event")
	}
	// A new file renamed over c: the event moves the epoch, and the next
	// resolution sees the new file.
	fresh := clientCopy(t, dir, ".c.new")
	if err := os.Rename(fresh, c); err != nil {
		t.Fatal(err)
	}
	check(a, c, d)
	if epoch() == e0 {
		t.Errorf("the epoch did not move after a rename over a remembered path")
	}
	// The missing file appears.
	if err := os.Link(a, missing); err != nil {
		t.Fatal(err)
	}
	check(c, d, missing)
	check(a, bb, c, d, missing)
	// An apply after all that enforces the files as they are.
	b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "c", Selector: engine.Selector{Exe: c}, Action: engine.ActionDeny},
		{Name: "d", Selector: engine.Selector{Exe: d}, Action: engine.ActionDeny},
	}})
	now, err := b.resolver.identifyAll([]string{c})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.ids.exe.list(c); len(got) == 0 || got[len(got)-1] != now[c] {
		t.Errorf("the apply enforces %v for %s, the file is %v", got, c, now[c])
	}
}

// TestResolutionWithoutInotify: with no inotify (every path resolved at
// every apply, the resolver's stat cache saving the opens), a resolution
// of paths the cache knows, and one of known and new paths together,
// answer what the first did: identities, places and symlink names, for a
// file, a symlink to one, a path through a symlinked directory, a
// dangling symlink and a missing path.
func TestResolutionWithoutInotify(t *testing.T) {
	requireKernel(t)
	b := newTestBackend(t, scratchCgroup(t), noWatch)
	b.exes.close() // as when inotify_init1 fails: fd -1
	dir := t.TempDir()
	file := clientCopy(t, dir, "file")
	os.Mkdir(filepath.Join(dir, "real"), 0o755)
	clientCopy(t, filepath.Join(dir, "real"), "inner")
	os.Symlink(file, filepath.Join(dir, "link"))
	os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling"))
	os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "dirlink"))
	other := clientCopy(t, dir, "other")
	paths := []string{file, filepath.Join(dir, "link"), filepath.Join(dir, "dirlink", "inner"),
		filepath.Join(dir, "dangling"), filepath.Join(dir, "missing")}
	resolve := func(paths ...string) resolved {
		t.Helper()
		found, err := b.identifyCached(paths, &identities{})
		if err != nil {
			t.Fatal(err)
		}
		return found
	}
	first := resolve(paths...)
	if b.exes.memo != nil || len(b.resolver.cache) == 0 {
		t.Fatalf("memo %v, %d paths in the stat cache: want no memo and the cache used", b.exes.memo, len(b.resolver.cache))
	}
	if len(first.names(filepath.Join(dir, "link"))) == 0 {
		t.Errorf("the symlink's names are missing: %v", first.nameLists())
	}
	view := func(e *exeEntry) string {
		if e == nil {
			return "nothing"
		}
		return fmt.Sprintf("id %v %v, place %v %v, names %q", e.hasID, e.id, e.hasPl, e.pl, e.names())
	}
	same := func(what string, got resolved, paths ...string) {
		t.Helper()
		for _, p := range paths {
			if g, w := view(got[p]), view(first[p]); g != w {
				t.Errorf("%s, %s:\n got %s\nwant %s", what, p, g, w)
			}
		}
	}
	same("again, from the stat cache", resolve(paths...), paths...)
	mixed := resolve(append([]string{other}, paths...)...)
	same("with a new path", mixed, paths...)
	if _, ok := mixed.id(other); !ok {
		t.Errorf("the new path %s has no identity: %v", other, mixed.ids())
	}
}
