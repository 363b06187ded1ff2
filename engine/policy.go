// Package engine is exewall's OS-independent core: the policy model and its
// parser, the reference evaluator, the Backend interface every OS implements,
// and the violation model.
package engine

import (
	"fmt"
	"net/netip"
)

// Action is what a rule (or the policy default) does with a connection that no
// destination entry decides.
type Action uint8

const (
	ActionAllow Action = iota
	ActionDeny
	ActionLocalOnly
)

func (a Action) String() string {
	switch a {
	case ActionAllow:
		return "allow"
	case ActionDeny:
		return "deny"
	case ActionLocalOnly:
		return "local-only"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// ParseAction parses the policy file's spelling of an action.
func ParseAction(s string) (Action, error) {
	switch s {
	case "allow":
		return ActionAllow, nil
	case "deny":
		return ActionDeny, nil
	case "local-only":
		return ActionLocalOnly, nil
	}
	return 0, fmt.Errorf("unknown action %q (want allow, deny or local-only)", s)
}

// Mode says whether denials are enforced or only reported.
type Mode uint8

const (
	ModeEnforce Mode = iota
	ModeAudit
)

func (m Mode) String() string {
	if m == ModeAudit {
		return "audit"
	}
	return "enforce"
}

// ParseMode parses the policy file's spelling of a mode.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "enforce":
		return ModeEnforce, nil
	case "audit":
		return ModeAudit, nil
	}
	return 0, fmt.Errorf("unknown mode %q (want enforce or audit)", s)
}

// Proto is a transport protocol. ProtoAny in a destination entry matches all.
type Proto uint8

const (
	ProtoAny Proto = iota
	ProtoTCP
	ProtoUDP
	ProtoICMP
)

func (p Proto) String() string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMP:
		return "icmp"
	}
	return ""
}

// Dest is one destination entry of a rule's allow: or deny: list:
// "CIDR [port N|N-M] [tcp|udp]".
type Dest struct {
	Prefix netip.Prefix // masked; IPv4 prefixes are kept as IPv4
	PortLo uint16       // 0 with PortHi 0 means any port
	PortHi uint16
	Proto  Proto
	Line   int // line in the policy file, 0 when built in code
}

// AnyPort reports whether the entry matches every port.
func (d Dest) AnyPort() bool { return d.PortLo == 0 && d.PortHi == 0 }

// String renders the entry in the policy file's syntax.
func (d Dest) String() string {
	s := d.Prefix.String()
	switch {
	case d.AnyPort():
	case d.PortLo == d.PortHi:
		s += fmt.Sprintf(" port %d", d.PortLo)
	default:
		s += fmt.Sprintf(" port %d-%d", d.PortLo, d.PortHi)
	}
	if d.Proto != ProtoAny {
		s += " " + d.Proto.String()
	}
	return s
}

// Selector says which processes a rule covers. Exactly one field is set.
type Selector struct {
	Exe    string // absolute path of an executable
	Cgroup string // cgroup v2 path relative to the cgroup mount, "/a/b"
	User   string // user name or numeric uid
	Group  string // group name or numeric gid
}

// String names the selector as people read it: "exe /usr/bin/curl",
// "cgroup /system.slice/x", "user _build", "group ci".
func (s Selector) String() string {
	switch {
	case s.Exe != "":
		return "exe " + s.Exe
	case s.Cgroup != "":
		return "cgroup " + s.Cgroup
	case s.User != "":
		return "user " + s.User
	case s.Group != "":
		return "group " + s.Group
	}
	return ""
}

// Rule is one entry of the policy's rules: list.
type Rule struct {
	Name string
	Selector
	Action Action
	Audit  bool
	Allow  []Dest
	Deny   []Dest
	Line   int // line of the rule in the policy file, 0 when built in code
}

// Policy is the whole desired state: plain data, deterministic, no OS state.
type Policy struct {
	Default Action
	Mode    Mode
	Rules   []Rule
}

// DefaultPolicy is what a daemon starts from when there is no policy file.
func DefaultPolicy() *Policy { return &Policy{Default: ActionAllow, Mode: ModeEnforce} }

// Clone returns a deep copy.
func (p *Policy) Clone() *Policy {
	c := &Policy{Default: p.Default, Mode: p.Mode, Rules: make([]Rule, len(p.Rules))}
	for i, r := range p.Rules {
		r.Allow = append([]Dest(nil), r.Allow...)
		r.Deny = append([]Dest(nil), r.Deny...)
		c.Rules[i] = r
	}
	return c
}

// RuleByName returns the rule with that name, or nil.
func (p *Policy) RuleByName(name string) *Rule {
	for i := range p.Rules {
		if p.Rules[i].Name == name {
			return &p.Rules[i]
		}
	}
	return nil
}
