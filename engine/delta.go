package engine

import (
	"path"
	"slices"
	"strings"
)

// RuleDelta says how p differs from old when p is old with a few rules
// replaced in place, removed or appended (what a CLI edit makes) and
// nothing else changed (default, mode, inbound default, resolvers): changed
// holds, in order, the indices of p's rules that old does not hold as they
// are (lines aside), removed the indices of old's rules that p no longer
// holds (removed, or replaced in place by a rule of another name). ok is
// false for any other change, which a backend applies whole.
func RuleDelta(old, p *Policy) (changed, removed []int, ok bool) {
	if old == nil || p == nil || old.Default != p.Default || old.Mode != p.Mode ||
		old.DefaultInbound != p.DefaultInbound || old.InboundSet != p.InboundSet ||
		!slices.Equal(old.Resolvers, p.Resolvers) {
		return nil, nil, false
	}
	return alignRules(old, p)
}

// keyMatches is exeKey(a) == k for k an exeKey, without folding a when its
// length already says no: exeKey never lengthens a path, and leaves one
// it does not shorten as it is (for a rooted path) or of the same length.
// A change compares one path with every rule's: most differ in length or
// are clean, and then cost a string comparison.
func keyMatches(a, k string) bool {
	if a == k {
		return true
	}
	if strings.HasPrefix(a, "/") {
		return len(a) > len(k) && exeKey(a) == k
	}
	return len(a) == len(k) && exeKey(a) == k
}

// selectorIs is selectorKey(o) == (kind, key), for a key selectorKey made.
func selectorIs(o *Rule, kind, key string) bool {
	switch {
	case o.Exe != "":
		return kind == "executable" && keyMatches(o.Exe, key)
	case o.Cgroup != "":
		return kind == "cgroup" && CleanCgroup(o.Cgroup) == key
	case o.User != "":
		return kind == "user" && o.User == key
	}
	return kind == "group" && o.Group == key
}

// ExeMatcher returns SameExe(a, exe) as a function of a, for comparing
// exe with many paths: what SameExe works out of exe is worked out once.
func ExeMatcher(exe string) func(a string) bool {
	if !strings.HasPrefix(exe, "/") {
		return func(a string) bool { return SameExe(a, exe) }
	}
	clean := cleanAbs(exe)
	cleaned := path.Clean(exe)
	return func(a string) bool {
		switch {
		case a == exe:
			return true
		case !strings.HasPrefix(a, "/"):
			return SameExe(a, exe)
		case clean && (len(a) <= len(exe) || cleanAbs(a)):
			// path.Clean never lengthens a rooted path and leaves a
			// clean one as it is: a cleans to exe only if longer and
			// not clean.
			return false
		}
		return path.Clean(a) == cleaned
	}
}
