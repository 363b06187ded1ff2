//go:build linux

package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestRunnableCache: a validation remembers the executables it found
// runnable; the next one takes the cache's word for a file stat says is
// unchanged, and reads again one that was rewritten, so a binary replaced
// by a script is refused as ever.
func TestRunnableCache(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "state", "runnable.cache")
	os.Mkdir(filepath.Dir(cache), 0o700)
	bin := filepath.Join(dir, "tool")
	if err := os.WriteFile(bin, []byte("\x7fELF not really\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := &Policy{Rules: []Rule{{Name: "tool", Selector: Selector{Exe: bin}, Action: ActionDeny}}}
	m := NewManager(ManagerConfig{Resolver: StatResolver{}, RunnableCache: cache})
	if err := m.validate(p); err != nil {
		t.Fatal(err)
	}
	m.Settle() // waits for the cache's write
	key, _ := runKeyOf(bin)
	if seen := loadRunnable(cache); len(seen.known) != 1 || !seen.known[key] {
		t.Fatalf("the cache holds %v, want the key of %s", seen.known, bin)
	}
	m.Close()
	NewManager(ManagerConfig{}).Settle() // nothing started: returns

	// Taken at its word while the file is as it was: the cache, not the
	// file, says this one is runnable.
	seen := &runnableSeen{known: map[runKey]bool{key: true}}
	os.WriteFile(bin+".script", []byte("#!/bin/sh\n"), 0o755)
	scriptKey, _ := runKeyOf(bin + ".script")
	seen.known[scriptKey] = true
	if err := seen.checkAll([]string{bin + ".script"})[0]; err != nil {
		t.Fatalf("a file the cache remembers was read: %v", err)
	}

	// Rewritten as a script: stat tells, the head is read, it is refused.
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	m = NewManager(ManagerConfig{Resolver: StatResolver{}, RunnableCache: cache})
	defer m.Close()
	if err := m.validate(p); err == nil || !strings.Contains(err.Error(), "is a script") {
		t.Fatalf("a binary rewritten as a script: %v", err)
	}
}

// TestRunnableCacheIgnoresABadFile: a cache file of another format, cut
// short or missing is an empty cache.
func TestRunnableCacheIgnoresABadFile(t *testing.T) {
	dir := t.TempDir()
	for _, data := range []string{"", "garbage", string(runnableMagic) + "short"} {
		path := filepath.Join(dir, "c")
		os.WriteFile(path, []byte(data), 0o600)
		if s := loadRunnable(path); len(s.known) != 0 {
			t.Errorf("%q read as %d entries", data, len(s.known))
		}
	}
	if s := loadRunnable(filepath.Join(dir, "none")); len(s.known) != 0 {
		t.Error("a missing cache has entries")
	}
}

// TestRunnableSeenRefusesAsCheckRunnable: a file the cache does not know
// is judged from the stat that made its key, with checkRunnable's word: a
// directory, a FIFO and a file nobody may run are refused, a binary taken.
func TestRunnableSeenRefusesAsCheckRunnable(t *testing.T) {
	dir := t.TempDir()
	bin, data, fifo := filepath.Join(dir, "tool"), filepath.Join(dir, "data"), filepath.Join(dir, "fifo")
	os.WriteFile(bin, []byte("\x7fELF not really\n"), 0o755)
	os.WriteFile(data, []byte("\x7fELF not really\n"), 0o644)
	if err := syscall.Mkfifo(fifo, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, exe := range []string{bin, data, fifo, dir, filepath.Join(dir, "gone")} {
		seen := &runnableSeen{known: map[runKey]bool{}}
		got, want := seen.checkAll([]string{exe})[0], checkRunnable(exe)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: the cache's check says %v, checkRunnable %v", exe, got, want)
		}
		if (want == nil) != (exe == bin || exe == filepath.Join(dir, "gone")) {
			t.Errorf("%s: checkRunnable says %v", exe, want)
		}
	}
}

// TestFirstNotRunnableAcrossChunks: the executables are checked a chunk at
// a time; the failure reported is still the first in rule order, in the
// first chunk or a later one.
func TestFirstNotRunnableAcrossChunks(t *testing.T) {
	dir := t.TempDir()
	bin, script, script2 := filepath.Join(dir, "tool"), filepath.Join(dir, "script"), filepath.Join(dir, "script2")
	os.WriteFile(bin, []byte("\x7fELF not really\n"), 0o755)
	os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(script2, []byte("#!/bin/sh\n"), 0o755)
	n := 2*checkChunk + 10
	for _, tc := range []struct{ scripts, want []int }{
		{nil, nil},
		{[]int{checkChunk + 5, checkChunk + 100}, []int{checkChunk + 5}},
		{[]int{2*checkChunk + 9, checkChunk - 1}, []int{checkChunk - 1}},
		{[]int{3, 2 * checkChunk}, []int{3}},
	} {
		rules := make([]Rule, n)
		check := make([]int, n)
		for i := range rules {
			rules[i] = Rule{Name: fmt.Sprintf("r%d", i), Selector: Selector{Exe: bin}}
			check[i] = i
		}
		for k, i := range tc.scripts {
			rules[i].Exe = []string{script, script2}[k]
		}
		i, err := firstNotRunnable(rules, check, loadRunnable(filepath.Join(dir, "none")))
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("no script: %v", err)
		case tc.want != nil && (err == nil || i != tc.want[0] || !strings.Contains(err.Error(), rules[i].Exe)):
			t.Errorf("scripts at %v: rule %d, %v; want rule %d", tc.scripts, i, err, tc.want[0])
		}
	}
}
