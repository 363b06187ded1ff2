package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// validateYAML parses a policy written with %s standing for the temp dir,
// then validates it with StatResolver.
func validateYAML(t *testing.T, dir, format string) error {
	t.Helper()
	p, err := Parse([]byte(strings.ReplaceAll(format, "%s", dir)))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return Validate(p, StatResolver{})
}

func wantPolicyError(t *testing.T, err error, line int, phrase string) {
	t.Helper()
	var pe *PolicyError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v (%T), want a *PolicyError at line %d with %q", err, err, line, phrase)
	}
	if pe.Line != line || !strings.Contains(pe.Msg, phrase) {
		t.Errorf("got %q, want line %d and %q", err, line, phrase)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestValidateExe(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("StatResolver knows files by path on windows")
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bin"), "\x7fELF not really")
	if err := os.Link(filepath.Join(dir, "bin"), filepath.Join(dir, "hardlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("bin", filepath.Join(dir, "symlink")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "py"), "#!/usr/bin/python3 -u\nprint()\n")
	writeFile(t, filepath.Join(dir, "envpy"), "#! /usr/bin/env  python3\nprint()\n")
	writeFile(t, filepath.Join(dir, "wrap"), "#!/bin/sh\nexec \"$@\"\n")
	writeFile(t, filepath.Join(dir, "nested"), "#!"+filepath.Join(dir, "wrap")+"\n")
	writeFile(t, filepath.Join(dir, "bare"), "#!\n")
	writeFile(t, filepath.Join(dir, "empty"), "")
	if err := os.Mkdir(filepath.Join(dir, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	const rule = "rules:\n  - name: a\n    exe: %s/bin\n    action: deny\n" // lines 2-4
	for _, tc := range []struct {
		name, policy string
		line         int
		phrase       string
	}{
		{"hard link", rule + "  - name: b\n    exe: %s/hardlink\n    action: deny\n", 5, `rules "a" and "b" name the same executable (` + dir + "/bin and " + dir + "/hardlink are dev="},
		{"symlink", rule + "  - name: b\n    exe: %s/symlink\n    action: deny\n", 5, `rules "a" and "b" name the same executable`},
		{"other path", rule + "  - name: b\n    exe: %s/dir/../bin\n    action: deny\n", 5, "same executable"},
		{"script", rule + "  - name: b\n    action: deny\n    exe: %s/py\n", 5, dir + "/py is a script run by /usr/bin/python3; name the interpreter or use a cgroup: rule"},
		{"env script", rule + "  - name: b\n    exe: %s/envpy\n    action: deny\n", 5, "/usr/bin/env python3"},
		{"nested script", rule + "  - name: b\n    exe: %s/nested\n    action: deny\n", 5, "is a script run by /bin/sh (via " + dir + "/wrap);"},
		{"no interpreter", rule + "  - name: b\n    exe: %s/bare\n    action: deny\n", 5, "no interpreter"},
		{"directory", rule + "  - name: b\n    exe: %s/dir\n    action: deny\n", 5, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantPolicyError(t, validateYAML(t, dir, tc.policy), tc.line, tc.phrase)
		})
	}
	ok := rule + "  - name: missing\n    exe: %s/not-yet-installed\n    action: deny\n" +
		"  - name: empty\n    exe: %s/empty\n    action: deny\n" +
		"  - name: sh\n    exe: /bin/sh\n    action: deny\n"
	if err := validateYAML(t, dir, ok); err != nil {
		t.Errorf("Validate refused a missing exe, an empty file or /bin/sh: %v", err)
	}
}

func TestValidateUsers(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("relies on Debian's user database")
	}
	for _, tc := range []struct {
		name, policy string
		line         int
		phrase       string
	}{
		{"unknown user", "rules:\n  - name: a\n    user: nobody\n    action: deny\n  - name: b\n    user: no-such-user-exewall\n    action: deny\n", 5, `unknown user "no-such-user-exewall"`},
		{"unknown group", "rules:\n  - name: a\n    group: no-such-group-exewall\n    action: deny\n", 2, `unknown group "no-such-group-exewall"`},
		{"same uid", "rules:\n  - name: a\n    user: root\n    action: deny\n  - name: b\n    user: 0\n    action: deny\n", 5, `rules "a" and "b" select the same user (uid 0)`},
		{"same gid", "rules:\n  - name: a\n    group: nogroup\n    action: deny\n  - name: b\n    group: 65534\n    action: deny\n", 5, "same group (gid 65534)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantPolicyError(t, validateYAML(t, "", tc.policy), tc.line, tc.phrase)
		})
	}
	ok := "rules:\n  - name: a\n    user: nobody\n    action: deny\n  - name: b\n    group: nobody-gid-is-not-uid\n    action: deny\n"
	wantPolicyError(t, validateYAML(t, "", ok), 5, "unknown group")
	ok = "rules:\n  - name: a\n    user: nobody\n    action: deny\n  - name: b\n    group: nogroup\n    action: deny\n  - name: c\n    user: 4000000\n    action: deny\n"
	if err := validateYAML(t, "", ok); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

type failingResolver struct{}

func (failingResolver) Identify(string) (FileID, bool, error) {
	return FileID{}, false, fmt.Errorf("permission denied")
}

func TestValidateStructure(t *testing.T) {
	// A policy built in code gets Parse's checks too.
	p := &Policy{Rules: []Rule{{Name: "a", Selector: Selector{Exe: "/a", Cgroup: "/b"}, Line: 3}}}
	wantPolicyError(t, Validate(p, StatResolver{}), 3, "has both exe and cgroup")
	p = &Policy{Rules: []Rule{{Name: "a", Selector: Selector{Exe: "/a"}, Line: 3}}}
	wantPolicyError(t, Validate(p, failingResolver{}), 3, "cannot resolve /a: permission denied")
	wantPolicyError(t, Validate(nil, StatResolver{}), 0, "no policy")
}

// batchResolver is StatResolver that also answers IdentifyAll, counting
// calls of each; fail makes IdentifyAll fail.
type batchResolver struct {
	single, batch int
	fail          bool
}

func (b *batchResolver) Identify(path string) (FileID, bool, error) {
	b.single++
	return StatResolver{}.Identify(path)
}

func (b *batchResolver) IdentifyAll(paths []string) (map[string]FileID, error) {
	b.batch++
	if b.fail {
		return nil, errors.New("no iterator today")
	}
	out := map[string]FileID{}
	for _, p := range paths {
		if id, ok, err := (StatResolver{}).Identify(p); err != nil {
			return nil, err
		} else if ok {
			out[p] = id
		}
	}
	return out, nil
}

// TestValidateBatch: a resolver that identifies many paths at once is asked
// once for a whole policy, and refusals are the same as path by path: the
// first in rule order, among duplicates and scripts alike, however many
// executables are read at once.
func TestValidateBatch(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("StatResolver knows files by path on windows")
	}
	dir := t.TempDir()
	var rules []Rule
	for i := range 500 {
		exe := filepath.Join(dir, fmt.Sprintf("bin%03d", i))
		writeFile(t, exe, "\x7fELF not really")
		rules = append(rules, Rule{Name: fmt.Sprintf("r%03d", i), Selector: Selector{Exe: exe}, Action: ActionDeny, Line: i + 1})
	}
	policy := func(edit func([]Rule)) *Policy {
		p := &Policy{Default: ActionAllow, Rules: append([]Rule(nil), rules...)}
		if edit != nil {
			edit(p.Rules)
		}
		return p
	}
	r := &batchResolver{}
	if err := Validate(policy(nil), r); err != nil {
		t.Fatal(err)
	}
	if r.batch != 1 || r.single != 0 {
		t.Errorf("500 exe rules: %d batches and %d single lookups, want 1 and 0", r.batch, r.single)
	}
	script, script2, bin10 := filepath.Join(dir, "script"), filepath.Join(dir, "script2"), filepath.Join(dir, "bin010-link")
	writeFile(t, script, "#!/bin/sh\n")
	writeFile(t, script2, "#!/bin/sh\n")
	if err := os.Link(rules[10].Exe, bin10); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		edit   func([]Rule)
		line   int
		phrase string
	}{
		{"script before duplicate", func(rs []Rule) { rs[300].Exe = script; rs[400].Exe = bin10 }, 301, "is a script"},
		{"duplicate before script", func(rs []Rule) { rs[400].Exe = script; rs[300].Exe = bin10 }, 301, "same executable"},
		{"two scripts", func(rs []Rule) { rs[499].Exe = script; rs[250].Exe = script2 }, 251, "is a script"},
		{"unknown user after script", func(rs []Rule) {
			rs[450].Exe = script
			rs[460].Selector = Selector{User: "no-such-user-exewall"}
		}, 451, "is a script"},
	} {
		for _, fail := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/batch fails %v", tc.name, fail), func(t *testing.T) {
				wantPolicyError(t, Validate(policy(tc.edit), &batchResolver{fail: fail}), tc.line, tc.phrase)
			})
		}
	}
}
