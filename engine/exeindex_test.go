package engine

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

// epochResolver is StatResolver with an epoch the test moves, as the Linux
// backend's watcher does on an event; single counts Identify calls.
type epochResolver struct {
	epoch   uint64
	current bool
	single  int
}

func (e *epochResolver) Identify(path string) (FileID, bool, error) {
	e.single++
	return StatResolver{}.Identify(path)
}

func (e *epochResolver) IdentityEpoch() (uint64, bool) { return e.epoch, e.current }

// TestValidateIndexed: a change checked against the index of the policy in
// force resolves only the changed rules, refuses what the full check
// refuses (with its words), and keeps an index equal to the full check's.
func TestValidateIndexed(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("StatResolver knows files by path on windows")
	}
	dir := t.TempDir()
	exe := func(i int) string {
		path := filepath.Join(dir, fmt.Sprintf("bin%03d", i))
		if _, err := os.Stat(path); err != nil {
			writeFile(t, path, "\x7fELF not really")
		}
		return path
	}
	p := &Policy{Default: ActionAllow}
	for i := range 50 {
		p.Rules = append(p.Rules, Rule{Name: fmt.Sprintf("r%03d", i), Selector: Selector{Exe: exe(i)}, Action: ActionDeny})
	}
	r := &epochResolver{epoch: 1, current: true}
	var ix *exeIndex
	if err := validateIndexed(nil, p, r, &ix); err != nil {
		t.Fatal(err)
	}
	if ix == nil || ix.policy != p {
		t.Fatal("no index after a full check")
	}
	// sameAsFull: the index is what a full check of p gives.
	sameAsFull := func(p *Policy) {
		t.Helper()
		exes, err := validateExes(nil, p, StatResolver{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := map[FileID]string{}
		for id, i := range exes {
			want[id] = p.Rules[i].Name
		}
		if !maps.Equal(ix.byID, want) {
			t.Errorf("index %v, a full check gives %v", ix.byID, want)
		}
	}
	change := func(what string, edit func(p *Policy), wantErr string, wantSingles int) {
		t.Helper()
		next := p.Clone()
		edit(next)
		r.single = 0
		err := validateIndexed(p, next, r, &ix)
		full := Validate(next, StatResolver{})
		switch {
		case wantErr == "" && err != nil:
			t.Fatalf("%s: %v", what, err)
		case wantErr != "" && (err == nil || err.Error() != full.Error()):
			t.Fatalf("%s: refused with %v, the full check says %v", what, err, full)
		case wantErr == "" && full != nil:
			t.Fatalf("%s: accepted, the full check says %v", what, full)
		}
		if wantSingles >= 0 && r.single != wantSingles {
			t.Errorf("%s: %d paths resolved, want %d", what, r.single, wantSingles)
		}
		if err == nil {
			p = next
			sameAsFull(p)
		}
	}
	change("action", func(p *Policy) { p.Rules[3].Action = ActionAllow }, "", 1)
	change("appended", func(p *Policy) {
		p.Rules = append(p.Rules, Rule{Name: "new", Selector: Selector{Exe: exe(100)}, Action: ActionDeny})
	}, "", 1)
	change("removed", func(p *Policy) { p.Rules = slices.Delete(p.Rules, 5, 6) }, "", 0)
	// A symlink to a file a rule names is the same executable.
	link := filepath.Join(dir, "link")
	if err := os.Symlink(exe(7), link); err != nil {
		t.Fatal(err)
	}
	change("duplicate appended", func(p *Policy) {
		p.Rules = append(p.Rules, Rule{Name: "dup", Selector: Selector{Exe: link}, Action: ActionDeny})
	}, "same executable", -1)
	change("duplicate in place", func(p *Policy) { p.Rules[10].Exe = link }, "same executable", -1)
	// The rule naming the file goes, another takes it: fine.
	change("file handed over", func(p *Policy) {
		at := slices.IndexFunc(p.Rules, func(r Rule) bool { return r.Exe == exe(7) })
		p.Rules = slices.Delete(p.Rules, at, at+1)
		p.Rules[at].Exe = link
	}, "", 1)
	script := filepath.Join(dir, "script")
	writeFile(t, script, "#!/bin/sh\n")
	change("script", func(p *Policy) {
		p.Rules = append(p.Rules, Rule{Name: "script", Selector: Selector{Exe: script}, Action: ActionDeny})
	}, "script", 1)
	// An event: two unchanged rules may now name one file (here a file
	// replaced by a symlink to another rule's), which the full check
	// refuses at the next change, as before the index.
	e20, e21 := exe(20), exe(21)
	if err := os.Remove(e20); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(e21, e20); err != nil {
		t.Fatal(err)
	}
	r.epoch++
	change("after an event", func(p *Policy) { p.Rules[1].Action = ActionAllow }, "same executable", -1)
	// Undone: the full check again, then the index.
	if err := os.Remove(e20); err != nil {
		t.Fatal(err)
	}
	writeFile(t, e20, "\x7fELF again")
	r.epoch++
	change("full after the event", func(p *Policy) { p.Rules[1].Action = ActionAllow }, "", -1)
	change("indexed again", func(p *Policy) { p.Rules[1].Action = ActionDeny }, "", 1)
	// Not current (a path not watched): the full check.
	r.current = false
	change("not current", func(p *Policy) { p.Rules[2].Action = ActionAllow }, "", -1)
	if r.single < 40 {
		t.Errorf("not current: %d paths resolved, want all", r.single)
	}
}

// TestKeyMatchesAndExeMatcher: the shortcuts say what exeKey and SameExe
// say, for every pair of a set of spellings.
func TestKeyMatchesAndExeMatcher(t *testing.T) {
	paths := []string{"/usr/bin/curl", "/usr//bin/curl", "/usr/./bin/curl", "/usr/bin/curl/", "/usr/bin/curl/.",
		"/usr/bin/../bin/curl", "/usr/bin/cur", "/usr/bin/curlx", "/usr/bin//curl/", "/", "//", "/.", "/a", "/a/",
		`C:\Tools\curl.exe`, `c:/tools/CURL.exe`, `C:\Tools\curl.ex`, "relative/x", "relative//x"}
	for _, a := range paths {
		for _, b := range paths {
			if got, want := keyMatches(a, exeKey(b)), exeKey(a) == exeKey(b); got != want {
				t.Errorf("keyMatches(%q, exeKey(%q)) = %v, want %v", a, b, got, want)
			}
			if got, want := ExeMatcher(b)(a), SameExe(a, b); got != want {
				t.Errorf("ExeMatcher(%q)(%q) = %v, SameExe says %v", b, a, got, want)
			}
			ra, rb := &Rule{Selector: Selector{Exe: a}}, &Rule{Selector: Selector{Exe: b}}
			kind, key := selectorKey(rb)
			ka, va := selectorKey(ra)
			if got, want := selectorIs(ra, kind, key), ka == kind && va == key; got != want {
				t.Errorf("selectorIs(%q, %q) = %v, want %v", a, b, got, want)
			}
		}
	}
}
