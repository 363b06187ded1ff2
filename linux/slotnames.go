//go:build linux

package linux

import (
	"slices"

	"github.com/exewall/exewall/engine"
)

// slotNames names each counter slot (the rule it counts), kept after the
// rule goes until the slot is handed again so that late events are still
// named. A slice by slot rather than a map: slots are dense and below
// maxRules, so 16 bytes a slot instead of ~45 for a map entry (4.6 MB at
// 100,000 rules), and a name snapshot shares it, copied only when a slot is
// named after that (instead of a copy per apply).
type slotNames struct {
	names  []string // "" for a slot that names nothing
	shared bool     // a snapshot holds names: copy before a change
}

func (s *slotNames) get(slot uint32) (string, bool) {
	return slotView(s.names).get(slot)
}

// name is get's name, "" for a slot that names nothing.
func (s *slotNames) name(slot uint32) string {
	n, _ := s.get(slot)
	return n
}

func (s *slotNames) set(slot uint32, name string) {
	s.own()
	if int(slot) >= len(s.names) {
		s.names = append(s.names, make([]string, int(slot)+1-len(s.names))...)
	}
	s.names[slot] = name
}

func (s *slotNames) del(slot uint32) {
	if _, ok := s.get(slot); ok {
		s.own()
		s.names[slot] = ""
	}
}

// reserve makes room for slots below n without growing a slot at a time.
func (s *slotNames) reserve(n int) {
	if n > cap(s.names) {
		s.own()
		s.names = slices.Grow(s.names, n-len(s.names))
	}
}

func (s *slotNames) own() {
	if s.shared {
		s.names, s.shared = slices.Clone(s.names), false
	}
}

// view is the names as they are now, for a snapshot; later changes do not
// show in it.
func (s *slotNames) view() slotView {
	s.shared = true
	return slotView(s.names)
}

// slotView is a snapshot's slot names; nobody changes it.
type slotView []string

func (v slotView) get(slot uint32) (string, bool) {
	if int(slot) < len(v) && v[slot] != "" {
		return v[slot], true
	}
	return "", false
}

// slotRuleTable is the rules of an applied policy by counter slot (its rule
// ids): a slice of pointers into the policy instead of a map by name (5.6
// MB at 100,000 rules, built again at every change). Nobody changes one
// once it is made.
type slotRuleTable []*engine.Rule

// ruleTableOf is p's rules by their slots (slot(i) is rule i's).
func ruleTableOf(p *engine.Policy, slot func(i int) uint32) slotRuleTable {
	var t slotRuleTable
	for i := range p.Rules {
		s := slot(i)
		if int(s) >= len(t) {
			t = append(t, make(slotRuleTable, int(s)+1-len(t)+len(p.Rules)-i)...)
		}
		t[s] = &p.Rules[i]
	}
	return t
}

// ruleNamed is the rule in force named name, if any.
func (b *Backend) ruleNamed(name string) *engine.Rule {
	slot, ok := b.slots.get(name)
	if !ok {
		return nil
	}
	return b.rules.named(slot, name)
}

// at is the rule at slot, if any.
func (t slotRuleTable) at(slot uint32) *engine.Rule {
	if int(slot) < len(t) {
		return t[slot]
	}
	return nil
}

// named is the rule at slot if it is named name.
func (t slotRuleTable) named(slot uint32, name string) *engine.Rule {
	if r := t.at(slot); r != nil && r.Name == name {
		return r
	}
	return nil
}
