package darwin

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/exewall/exewall/engine"
)

// checkSelectors refuses what pf cannot select and selectors that would make
// pf and the engine disagree.
func checkSelectors(p *engine.Policy) error {
	var cg []string
	seen := map[string]string{}
	for _, r := range p.Rules {
		var key string
		switch {
		case r.Exe != "":
			if err := checkExeRule(p, &r); err != nil {
				return err
			}
			continue
		case r.Cgroup != "":
			cg = append(cg, strconv.Quote(r.Name))
			continue
		case r.User != "":
			key = "user " + r.User
		case r.Group != "":
			key = "group " + r.Group
		default:
			return fmt.Errorf("rule %q selects no processes", r.Name)
		}
		// pf takes the first quick match, the engine the last rule for an
		// id: refuse rather than pick one.
		if other, ok := seen[key]; ok {
			return fmt.Errorf("rules %q and %q both select %s", other, r.Name, key)
		}
		seen[key] = r.Name
	}
	if len(cg) > 0 {
		return fmt.Errorf("%s: cannot select by cgroup on macOS, which has no cgroups; use a user: or group: rule and run the service under a dedicated user: %w",
			ruleNames(cg), engine.ErrNotSupported)
	}
	if err := engine.RefuseNames(p, "macOS would need a Network Extension DNS proxy (docs/macos.md)"); err != nil {
		return err
	}
	return engine.RefuseInbound(p, "pf rules of a user or group judge outbound only")
}

// checkExeRule refuses the exe: rules the Application Firewall cannot
// enforce. It blocks all of a program's incoming connections or none, and
// pf cannot tell programs apart, so an exe: rule is enforced inbound only
// and only as `action: deny` without entries; everything else would be
// enforced as something weaker than it says.
func checkExeRule(p *engine.Policy, r *engine.Rule) error {
	const how = "macOS enforces exe: rules with the Application Firewall, which blocks all of a program's incoming connections or none, and nothing it opens (pf matches only the user or group owning a socket)"
	switch {
	case r.Action != engine.ActionDeny:
		return fmt.Errorf("rule %q: action %s for an executable is %w on macOS: %s; only `action: deny` without entries is accepted (inbound only); for outbound, use a user: or group: rule and run the app under a dedicated user",
			r.Name, r.Action, engine.ErrNotSupported, how)
	case len(r.Allow)+len(r.Deny) > 0:
		return fmt.Errorf("rule %q: allow:/deny: entries for an executable are %w on macOS: %s; remove the entries (the rule then blocks every incoming connection) or use a user: or group: rule",
			r.Name, engine.ErrNotSupported, how)
	case r.Audit || p.Mode == engine.ModeAudit:
		return fmt.Errorf("rule %q: auditing an executable is %w on macOS: the Application Firewall blocks and reports nothing it lets through; use mode: enforce and audit: false, or remove the rule",
			r.Name, engine.ErrNotSupported)
	}
	return nil
}

func ruleNames(quoted []string) string {
	if len(quoted) == 1 {
		return "rule " + quoted[0]
	}
	return "rules " + strings.Join(quoted, ", ")
}
