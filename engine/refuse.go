package engine

import (
	"fmt"
	"strconv"
	"strings"
)

// RefuseNames refuses name entries with why (one line, no trailing period)
// for backends that cannot enforce them, naming the rules that have them.
func RefuseNames(p *Policy, why string) error {
	var rules []string
	for i := range p.Rules {
		if p.Rules[i].HasNames() {
			rules = append(rules, strconv.Quote(p.Rules[i].Name))
		}
	}
	if len(rules) == 0 {
		return nil
	}
	return fmt.Errorf("%s: DNS name destinations are %w here: %s", rulesWord(rules), ErrNotSupported, why)
}

// RefuseInbound refuses default_inbound and "in" entries with why for
// backends that do not judge inbound connections.
func RefuseInbound(p *Policy, why string) error {
	if p.DefaultInbound != ActionAllow {
		return fmt.Errorf("default_inbound: %s is %w here: %s", p.DefaultInbound, ErrNotSupported, why)
	}
	var rules []string
	for i := range p.Rules {
		for _, d := range append(append([]Dest(nil), p.Rules[i].Allow...), p.Rules[i].Deny...) {
			if d.Dir == DirIn {
				rules = append(rules, strconv.Quote(p.Rules[i].Name))
				break
			}
		}
	}
	if len(rules) == 0 {
		return nil
	}
	return fmt.Errorf("%s: inbound (\"in\") entries are %w here: %s", rulesWord(rules), ErrNotSupported, why)
}

func rulesWord(quoted []string) string {
	if len(quoted) == 1 {
		return "rule " + quoted[0]
	}
	return "rules " + strings.Join(quoted, ", ")
}
