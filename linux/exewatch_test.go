//go:build linux

package linux

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/exewall/exewall/engine"
)

// TestApplySeesReplacedFiles: an apply right after an exe rule's file was
// replaced (a new file renamed over it, a symlink chain retargeted, a
// directory on the path swapped) enforces the new file, although an apply
// no longer asks the file system about paths it saw no change to.
func TestApplySeesReplacedFiles(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg, noWatch)
	port := listenLoopback(t)
	dir := t.TempDir()
	plain := clientCopy(t, dir, "plain")
	prog, alt, _, other := alternatives(t)
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	nested := clientCopy(t, sub, "nested")
	policy := func(action engine.Action) *engine.Policy {
		return &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
			{Name: "plain", Selector: engine.Selector{Exe: plain}, Action: action},
			{Name: "java", Selector: engine.Selector{Exe: prog}, Action: action},
			{Name: "nested", Selector: engine.Selector{Exe: nested}, Action: action},
		}}
	}
	b.apply(t, policy(engine.ActionDeny))
	b.apply(t, policy(engine.ActionDeny)) // both generations hold it, from the cache

	// A new plain file renamed over the path.
	fresh := clientCopy(t, dir, ".plain.new")
	if err := os.Rename(fresh, plain); err != nil {
		t.Fatal(err)
	}
	retarget(t, alt, other)
	// The directory holding nested is replaced by another one.
	sub2 := filepath.Join(dir, "sub2")
	if err := os.Mkdir(sub2, 0o755); err != nil {
		t.Fatal(err)
	}
	clientCopy(t, sub2, "nested")
	if err := os.Rename(sub, filepath.Join(dir, "sub.old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(sub2, sub); err != nil {
		t.Fatal(err)
	}
	b.apply(t, policy(engine.ActionDeny))
	for _, exe := range []string{plain, other, nested} {
		if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
			t.Errorf("%s, replaced before the apply, is not denied: %+v", exe, out[0])
		}
	}
	// Not only the exec hook's doing: the apply resolved the new files.
	for _, exe := range []string{plain, prog, nested} {
		now, err := b.resolver.identifyAll([]string{exe})
		if err != nil {
			t.Fatal(err)
		}
		if !b.ids.exe.contains(exe, now[exe]) {
			t.Errorf("the apply kept %s's old identity %v, the file is %v now", exe, b.ids.exe.list(exe), now[exe])
		}
		if e := b.exes.entries[exe]; e == nil || e.id != now[exe] {
			t.Errorf("%s is not remembered with its new identity after the apply: %+v", exe, e)
		}
	}
}

// TestExeWatchCountWraps: at the end of its 32-bit event count the watcher
// forgets every entry (each was validated at a count that would read as in
// the future) and counts again; no entry outlives the wrap.
func TestExeWatchCountWraps(t *testing.T) {
	w := newExeWatch()
	defer w.close()
	e := &exeEntry{seq: math.MaxUint32 - 1, hasID: true}
	w.entries["/bin/x"] = e
	w.seq = math.MaxUint32 - 1
	w.changed["/bin"] = w.seq
	w.memo = &idMemo{epoch: w.epoch, found: resolved{"/bin/x": e}}
	if w.lookup("/bin/x") != e {
		t.Fatal("the entry is not found before the wrap")
	}
	w.step()
	if w.seq != math.MaxUint32 || len(w.entries) != 1 {
		t.Fatalf("before its end the count is %d with %d entries", w.seq, len(w.entries))
	}
	epoch := w.epoch
	w.step()
	if w.seq != 1 || w.floor != 0 || len(w.entries) != 0 || len(w.changed) != 0 || w.memo != nil || w.epoch == epoch {
		t.Fatalf("after the wrap: seq %d floor %d, %d entries, %d changed, memo %v, epoch moved %v",
			w.seq, w.floor, len(w.entries), len(w.changed), w.memo != nil, w.epoch != epoch)
	}
	if w.lookup("/bin/x") != nil {
		t.Fatal("an entry outlived the wrap")
	}
}
