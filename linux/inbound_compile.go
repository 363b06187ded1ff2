//go:build linux

package linux

import "github.com/exewall/exewall/engine"

// denies reports whether the rule has a deny entry covering direction dir
// (engine.DirOut or engine.DirIn): a rule with action allow and none accepts
// (in) or opens (out) anything.
func denies(r *engine.Rule, dir engine.Direction) bool {
	for _, d := range r.Deny {
		if d.Dir.Covers(dir) {
			return true
		}
	}
	return false
}
