package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Validate checks what needs the OS, after the checks Parse makes (so a
// policy built in code is held to both). Each exe is resolved with r: a
// missing file is fine (the rule is kept and enforced when it appears), two
// rules resolving to one FileID are refused, and so is a script, whose
// processes run as its interpreter. user: and group: names must resolve, and
// two rules may not select one uid or gid. Errors are *PolicyError naming
// Rule.Line.
func Validate(p *Policy, r Resolver) error { return validateFrom(nil, p, r) }

// validateFrom is Validate for a change from old, a policy that passed it:
// the exe of a rule old has unchanged is not opened again to tell whether
// it is a script (what it was is what the policy in force enforces, and a
// one-rule change must not cost a read of every executable).
func validateFrom(old, p *Policy, r Resolver) error {
	_, err := validateExes(old, p, r, nil)
	return err
}

// validateExes is validateFrom that also returns, when p passes, the
// index of the rule naming each identity its exes resolved to. seen, if not
// nil, answers for the executables it remembers runnable (runnable.go).
func validateExes(old, p *Policy, r Resolver, seen *runnableSeen) (map[FileID]int, error) {
	// A CLI edit replaces, removes or appends a rule or two: the rules it
	// leaves as they were passed checkPolicy with old, and only the changed
	// ones need checking against the rest.
	changed, aligned := changedRules(old, p)
	var same map[string]*Rule
	if old != nil && !aligned {
		same = make(map[string]*Rule, len(old.Rules))
		for i := range old.Rules {
			same[old.Rules[i].Name] = &old.Rules[i]
		}
	}
	if !aligned || !checkChanged(p, changed) {
		// The full check, also for the exact refusal a changed rule earns.
		if err := checkPolicy(p); err != nil {
			return nil, err
		}
	}
	unchanged := func(i int) bool {
		if aligned {
			_, c := slices.BinarySearch(changed, i)
			return !c
		}
		o := same[p.Rules[i].Name]
		return o != nil && sameRule(o, &p.Rules[i])
	}
	r = identifyRules(onePass(r), p.Rules)
	exes := make(map[FileID]int, len(p.Rules)) // the rule naming it first
	accounts := map[string]int{}               // "uid 501", "gid 20", "sid S-1-..."
	var check []int                            // rules whose exe is read for a #! line
	var stop error                             // the first refusal of the loop below
loop:
	for i := range p.Rules {
		rule := &p.Rules[i]
		switch {
		case rule.Exe != "":
			id, ok, err := r.Identify(rule.Exe)
			if err != nil {
				stop = refuse(rule.Line, "rule %q: cannot resolve %s: %v", rule.Name, rule.Exe, err)
				break loop
			}
			if !ok {
				continue
			}
			if first, dup := exes[id]; dup {
				stop = refuse(rule.Line, "rules %q and %q name the same executable (%s and %s are %v)",
					p.Rules[first].Name, rule.Name, p.Rules[first].Exe, rule.Exe, id)
				break loop
			}
			exes[id] = i
			if unchanged(i) {
				continue
			}
			check = append(check, i)
		case rule.User != "" || rule.Group != "":
			group, kind, name := rule.Group != "", "user", rule.User
			if group {
				kind, name = "group", rule.Group
			}
			id, err := lookupAccount(group, name)
			if err != nil {
				stop = refuse(rule.Line, "rule %q: %v", rule.Name, err)
				break loop
			}
			if first, dup := accounts[id]; dup {
				stop = refuse(rule.Line, "rules %q and %q select the same %s (%s)", p.Rules[first].Name, rule.Name, kind, id)
				break loop
			}
			accounts[id] = i
		}
	}
	// Every rule checked comes before the one that stopped the loop: the
	// refusal is the first in rule order either way.
	if i, err := firstNotRunnable(p.Rules, check, seen); err != nil {
		return nil, refuse(p.Rules[i].Line, "%v", err)
	}
	if stop != nil {
		return nil, stop
	}
	return exes, nil
}

// firstNotRunnable runs checkRunnable on the exe of each rule in check (in
// rule order): at daemon start that is every executable of the policy.
// It returns the first failure in that order. The executables are checked
// checkChunk at a time, up to the chunk that holds a failure: what the
// check keeps is a chunk's (at 100,000 rules, all at once, ~10 MB).
func firstNotRunnable(rules []Rule, check []int, seen *runnableSeen) (int, error) {
	exes := make([]string, 0, min(len(check), checkChunk))
	for lo := 0; lo < len(check); lo += checkChunk {
		chunk := check[lo:min(lo+checkChunk, len(check))]
		exes = exes[:0]
		for _, i := range chunk {
			exes = append(exes, rules[i].Exe)
		}
		for k, err := range seen.checkAll(exes) {
			if err != nil {
				return chunk[k], err
			}
		}
	}
	return 0, nil
}

// checkChunk is how many executables firstNotRunnable checks at a time:
// enough for many batches of reads (eachHead).
const checkChunk = 8192

// checkRunnable refuses an exe whose processes would not carry its identity:
// a directory, or a script (the kernel's exe_file is then the interpreter).
// A file that vanished since Identify is left to the backend, like any
// missing file.
func checkRunnable(exe string) error {
	fi, err := os.Stat(exe)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot read %s: %v", exe, err)
	}
	if err := checkRunnableMode(exe, fi.Mode()); err != nil {
		return err
	}
	var head [binprmBufSize]byte
	n, err := readHead(exe, head[:])
	return checkScript(exe, head[:n], err)
}

// checkRunnableMode is the part of checkRunnable that stat answers: exe,
// of mode, is a regular file that someone may execute.
func checkRunnableMode(exe string, mode fs.FileMode) error {
	if !mode.IsRegular() {
		return fmt.Errorf("%s is not a regular file", exe)
	}
	if mode.Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable (mode %v): no process can run it; check the path", exe, mode.Perm())
	}
	return nil
}

// checkScript is the part of checkRunnable that exe's head answers: head
// is its start, or err why it could not be read.
func checkScript(exe string, head []byte, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil // vanished since its stat
	}
	if err != nil {
		return fmt.Errorf("cannot read %s: %v", exe, err)
	}
	interp, via, err := scriptInterpreterFrom(exe, head)
	if err != nil {
		return err
	}
	if interp == "" {
		return nil
	}
	if via != "" {
		via = " (via " + via + ")"
	}
	return fmt.Errorf("%s is a script run by %s%s; name the interpreter or use a cgroup: rule", exe, interp, via)
}

// maxInterpDepth is how many nested #! interpreters Linux follows.
const maxInterpDepth = 4

// scriptInterpreterFrom returns the program that runs when exe, whose head
// is head, is executed, or "" when exe is not a script. Interpreters that
// are scripts themselves are followed as the kernel does; via lists them.
// For "#!/usr/bin/env cmd" the answer is the cmd found on PATH (via
// "/usr/bin/env cmd"); when PATH has no cmd it is "/usr/bin/env cmd".
func scriptInterpreterFrom(exe string, head []byte) (interp, via string, err error) {
	prog, args, ok := parseShebang(head)
	if !ok {
		return "", "", nil
	}
	return followScript(exe, prog, args)
}

// followScript follows the #! line of script exe (prog and args) to the
// program that runs it.
func followScript(exe, prog, args string) (interp, via string, err error) {
	var chain []string
	for depth := 0; depth < maxInterpDepth; depth++ {
		if depth > 0 {
			var ok bool
			if prog, args, ok, err = shebang(exe); err != nil {
				return "", "", err
			} else if !ok {
				break
			}
		}
		if prog == "" {
			return "", "", fmt.Errorf("%s is a script with no interpreter on its #! line", exe)
		}
		if filepath.Base(prog) == "env" && args != "" {
			// What runs is the command env finds on PATH: name it, so the
			// user can write the rule for it.
			cmd := envCommand(args)
			found, err := exec.LookPath(cmd)
			if err != nil {
				chain = append(chain, prog+" "+args)
				break
			}
			chain = append(chain, prog+" "+args)
			prog = found
		}
		chain = append(chain, prog)
		if !filepath.IsAbs(prog) {
			break // resolved against the caller's directory: nothing to follow
		}
		exe = prog
	}
	if len(chain) == 0 {
		return "", "", nil
	}
	return chain[len(chain)-1], strings.Join(chain[:len(chain)-1], ", "), nil
}

// binprmBufSize is how much of a file Linux reads to find a #! line.
const binprmBufSize = 256

// shebang reads a #! line: the interpreter and its argument string.
func shebang(file string) (prog, args string, ok bool, err error) {
	var head [binprmBufSize]byte
	n, err := readHead(file, head[:])
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, fmt.Errorf("cannot read %s: %v", file, err)
	}
	prog, args, ok = parseShebang(head[:n])
	return prog, args, ok, nil
}

// parseShebang reads the #! line at the start of buf, if it has one.
func parseShebang(buf []byte) (prog, args string, ok bool) {
	if !bytes.HasPrefix(buf, []byte("#!")) {
		return "", "", false
	}
	line, _, _ := bytes.Cut(buf[2:], []byte("\n"))
	s := strings.Trim(string(line), " \t\r")
	prog = s
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		prog, args = s[:i], strings.Trim(s[i+1:], " \t")
	}
	return prog, args, true
}

// envCommand is the command an env #! line runs: its first word that is not
// an option ("-S node --flag" runs node).
func envCommand(args string) string {
	for _, w := range strings.Fields(args) {
		if !strings.HasPrefix(w, "-") && !strings.Contains(w, "=") {
			return w
		}
	}
	return args
}
