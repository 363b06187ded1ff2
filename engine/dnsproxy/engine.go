package dnsproxy

import (
	"github.com/exewall/exewall/engine"
)

// NameBindings returns the bindings in force as `exewall names` shows them
// (what a backend's engine.NameLister returns): ruleName names a rule id,
// ok false for a rule no longer in the policy (its bindings are left out).
func (p *Proxy) NameBindings(ruleName func(rule uint32) (string, bool)) []engine.NameBinding {
	bs := p.Bindings()
	out := make([]engine.NameBinding, 0, len(bs))
	for _, b := range bs {
		name, ok := ruleName(b.Rule)
		if !ok || len(b.Names) == 0 {
			continue
		}
		out = append(out, engine.NameBinding{Rule: name, Name: b.Names[0], Via: b.Names[1:], Addr: b.Addr, Expires: b.Expires})
	}
	return out
}

// NameStats returns the counters and TTL bounds as engine.Status shows them.
func (p *Proxy) NameStats() engine.NameStats {
	st := p.Stats()
	return engine.NameStats{TTLFloorSeconds: p.cfg.TTLFloor.Seconds(), TTLCeilingSeconds: p.cfg.TTLCeiling.Seconds(),
		Queries: st.Queries, Answers: st.Answers, Bindings: st.Bindings, Evictions: st.Evictions, Failures: st.Failures, InForce: st.InForce}
}

// LearnLookups turns bindings into what a learning session records
// (engine.Manager.ObserveLookups): the name asked and the address answered.
func LearnLookups(bs []Binding) []engine.LearnLookup {
	out := make([]engine.LearnLookup, 0, len(bs))
	for _, b := range bs {
		if len(b.Names) > 0 {
			out = append(out, engine.LearnLookup{Name: b.Names[0], Addr: b.Addr})
		}
	}
	return out
}
