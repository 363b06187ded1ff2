package engine

import (
	"bytes"
	"fmt"
	"net/netip"

	"go.yaml.in/yaml/v3"
)

// RuleView is a rule in the policy file's own field names, for JSON
// (`exewall ls --json`) and for Marshal. Destinations are in ParseDest
// syntax.
type RuleView struct {
	Name   string   `json:"name" yaml:"name"`
	Exe    string   `json:"exe,omitempty" yaml:"exe,omitempty"`
	Cgroup string   `json:"cgroup,omitempty" yaml:"cgroup,omitempty"`
	User   string   `json:"user,omitempty" yaml:"user,omitempty"`
	Group  string   `json:"group,omitempty" yaml:"group,omitempty"`
	Action string   `json:"action" yaml:"action"`
	Audit  bool     `json:"audit,omitempty" yaml:"audit,omitempty"`
	Allow  []string `json:"allow,omitempty" yaml:"allow,omitempty"`
	Deny   []string `json:"deny,omitempty" yaml:"deny,omitempty"`
}

// PolicyView is a whole policy in the policy file's own field names.
type PolicyView struct {
	Default        string     `json:"default" yaml:"default"`
	Mode           string     `json:"mode" yaml:"mode"`
	DefaultInbound string     `json:"default_inbound,omitempty" yaml:"default_inbound,omitempty"`
	Resolvers      []string   `json:"resolvers,omitempty" yaml:"resolvers,omitempty"`
	Rules          []RuleView `json:"rules" yaml:"rules"`
}

// ViewRule renders r as a RuleView.
func ViewRule(r Rule) RuleView {
	v := RuleView{Name: r.Name, Exe: r.Exe, Cgroup: r.Cgroup, User: r.User, Group: r.Group,
		Action: r.Action.String(), Audit: r.Audit}
	for _, d := range r.Allow {
		v.Allow = append(v.Allow, d.String())
	}
	for _, d := range r.Deny {
		v.Deny = append(v.Deny, d.String())
	}
	return v
}

// Rule parses v back, with the checks Parse makes on one rule. Errors are
// *PolicyError without a line.
func (v RuleView) Rule() (Rule, error) {
	r := Rule{Name: v.Name, Selector: Selector{Exe: v.Exe, User: v.User, Group: v.Group}, Audit: v.Audit}
	if v.Cgroup != "" {
		if err := checkCgroup(v.Cgroup); err != nil {
			return Rule{}, refuse(0, "%v", err)
		}
		r.Cgroup = CleanCgroup(v.Cgroup)
	}
	var err error
	if r.Action, err = ParseAction(v.Action); err != nil {
		return Rule{}, refuse(0, "rule %q: action: %v", v.Name, err)
	}
	if r.Allow, err = parseDestList("allow", v.Allow); err != nil {
		return Rule{}, err
	}
	if r.Deny, err = parseDestList("deny", v.Deny); err != nil {
		return Rule{}, err
	}
	rules := []Rule{r}
	if err := newChecker(ruleLines(rules), 1).add(rules, 0); err != nil {
		return Rule{}, err
	}
	return r, nil
}

func parseDestList(field string, ss []string) ([]Dest, error) {
	var out []Dest
	for _, s := range ss {
		d, err := ParseDest(s)
		if err != nil {
			return nil, refuse(0, "%s: %v", field, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// ViewPolicy renders p as a PolicyView.
func ViewPolicy(p *Policy) PolicyView {
	v := PolicyView{Default: p.Default.String(), Mode: p.Mode.String(), Rules: []RuleView{}}
	if p.InboundSet || p.DefaultInbound != ActionAllow {
		v.DefaultInbound = p.DefaultInbound.String()
	}
	for _, r := range p.Resolvers {
		v.Resolvers = append(v.Resolvers, ResolverString(r))
	}
	for _, r := range p.Rules {
		v.Rules = append(v.Rules, ViewRule(r))
	}
	return v
}

// Policy parses v back, with the checks Parse makes.
func (v PolicyView) Policy() (*Policy, error) {
	p := DefaultPolicy()
	var err error
	if p.Default, err = ParseAction(v.Default); err != nil {
		return nil, refuse(0, "default: %v", err)
	}
	if p.Mode, err = ParseMode(v.Mode); err != nil {
		return nil, refuse(0, "mode: %v", err)
	}
	if v.DefaultInbound != "" {
		if p.DefaultInbound, err = ParseAction(v.DefaultInbound); err != nil {
			return nil, refuse(0, "default_inbound: %v", err)
		}
		p.InboundSet = true
	}
	for _, s := range v.Resolvers {
		ap, err := ParseResolver(s)
		if err != nil {
			return nil, refuse(0, "resolvers: %v", err)
		}
		p.Resolvers = append(p.Resolvers, ap)
	}
	for _, rv := range v.Rules {
		r, err := rv.Rule()
		if err != nil {
			return nil, err
		}
		p.Rules = append(p.Rules, r)
	}
	if err := checkPolicy(p); err != nil {
		return nil, err
	}
	return p, nil
}

// Marshal renders p as a policy file: default, mode, then rules with their
// fields in file order. It refuses a policy Parse would refuse, so what it
// writes can always be read back.
func Marshal(p *Policy) ([]byte, error) {
	if err := checkPolicy(p); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(ViewPolicy(p)); err != nil {
		return nil, fmt.Errorf("marshal policy: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal policy: %w", err)
	}
	return buf.Bytes(), nil
}

// ResolverString renders a resolvers: entry as ParseResolver reads it.
func ResolverString(ap netip.AddrPort) string {
	if ap.Port() == 0 {
		return ap.Addr().String()
	}
	return ap.String()
}
