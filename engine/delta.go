package engine

import "slices"

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
	i, j := 0, 0
	for i < len(p.Rules) && j < len(old.Rules) {
		a, b := &p.Rules[i], &old.Rules[j]
		switch {
		case a.Name == b.Name:
			if !sameRule(a, b) {
				changed = append(changed, i)
			}
			i++
			j++
		case j+1 < len(old.Rules) && a.Name == old.Rules[j+1].Name:
			removed = append(removed, j) // old.Rules[j] was removed
			j++
		default:
			changed = append(changed, i) // replaced in place
			removed = append(removed, j)
			i++
			j++
		}
		if len(changed) > maxAligned || len(removed) > maxAligned {
			return nil, nil, false
		}
	}
	for ; i < len(p.Rules); i++ {
		changed = append(changed, i) // appended
	}
	for ; j < len(old.Rules); j++ {
		removed = append(removed, j)
	}
	if len(changed) > maxAligned || len(removed) > maxAligned {
		return nil, nil, false
	}
	return changed, removed, true
}
