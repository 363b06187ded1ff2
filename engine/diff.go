package engine

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Changes is what applying a policy would change.
type Changes struct {
	Default *[2]string   `json:"default,omitempty"` // from, to
	Mode    *[2]string   `json:"mode,omitempty"`
	Added   []RuleView   `json:"added"`
	Removed []RuleView   `json:"removed"`
	Changed []RuleChange `json:"changed"`
}

// RuleChange is a rule kept by name whose fields change.
type RuleChange struct {
	Name   string   `json:"name"`
	Fields []string `json:"fields"` // "action: deny -> local-only", "allow: +1.2.3.4/32 port 443 tcp"
	From   RuleView `json:"from"`
	To     RuleView `json:"to"`
}

// None reports whether nothing would change.
func (c Changes) None() bool {
	return c.Default == nil && c.Mode == nil && len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Changed) == 0
}

// Compare lists what replacing cur with next changes. Rules are matched
// by name; the order of rules does not matter to the verdicts.
func Compare(cur, next PolicyView) Changes {
	c := Changes{Added: []RuleView{}, Removed: []RuleView{}, Changed: []RuleChange{}}
	if cur.Default != next.Default {
		c.Default = &[2]string{cur.Default, next.Default}
	}
	if cur.Mode != next.Mode {
		c.Mode = &[2]string{cur.Mode, next.Mode}
	}
	old := map[string]RuleView{}
	for _, r := range cur.Rules {
		old[r.Name] = r
	}
	seen := map[string]bool{}
	for _, r := range next.Rules {
		seen[r.Name] = true
		o, ok := old[r.Name]
		switch {
		case !ok:
			c.Added = append(c.Added, r)
		case !reflect.DeepEqual(o, r):
			c.Changed = append(c.Changed, RuleChange{Name: r.Name, Fields: fieldChanges(o, r), From: o, To: r})
		}
	}
	for _, r := range cur.Rules {
		if !seen[r.Name] {
			c.Removed = append(c.Removed, r)
		}
	}
	return c
}

func fieldChanges(a, b RuleView) []string {
	var out []string
	scalar := func(name, x, y string) {
		if x != y {
			out = append(out, fmt.Sprintf("%s: %s -> %s", name, orNone(x), orNone(y)))
		}
	}
	scalar("selector", a.Selector().String(), b.Selector().String())
	scalar("action", a.Action, b.Action)
	scalar("audit", fmt.Sprint(a.Audit), fmt.Sprint(b.Audit))
	list := func(name string, x, y []string) {
		var parts []string
		for _, s := range y {
			if !slices.Contains(x, s) {
				parts = append(parts, "+"+s)
			}
		}
		for _, s := range x {
			if !slices.Contains(y, s) {
				parts = append(parts, "-"+s)
			}
		}
		if len(parts) > 0 {
			out = append(out, name+": "+strings.Join(parts, ", "))
		}
	}
	list("allow", a.Allow, b.Allow)
	list("deny", a.Deny, b.Deny)
	if len(out) == 0 {
		out = append(out, "order of destinations")
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Selector returns the rule's selector.
func (v RuleView) Selector() Selector {
	return Selector{Exe: v.Exe, Cgroup: v.Cgroup, User: v.User, Group: v.Group}
}

// String describes the rule for people, without its name: "deny exe
// /usr/bin/rclone, allow 203.0.113.0/24 port 443 tcp (audit)".
func (v RuleView) String() string {
	s := v.Action + " " + v.Selector().String()
	if len(v.Allow) > 0 {
		s += ", allow " + strings.Join(v.Allow, "; ")
	}
	if len(v.Deny) > 0 {
		s += ", deny " + strings.Join(v.Deny, "; ")
	}
	if v.Audit {
		s += " (audit)"
	}
	return s
}
