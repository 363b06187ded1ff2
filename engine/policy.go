// Package engine is exewall's OS-independent core: the policy model and its
// parser, the reference evaluator, the Backend interface every OS implements,
// and the violation model.
package engine

import (
	"fmt"
	"net/netip"
	"slices"
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

// Direction limits a destination entry to connections the program opens
// (out) or accepts (in); DirBoth, the zero value, is both.
type Direction uint8

const (
	DirBoth Direction = iota
	DirOut
	DirIn
)

func (d Direction) String() string {
	switch d {
	case DirOut:
		return "out"
	case DirIn:
		return "in"
	}
	return ""
}

// Covers reports whether an entry limited to d applies to an attempt in
// direction dir (DirOut or DirIn).
func (d Direction) Covers(dir Direction) bool { return d == DirBoth || d == dir }

// Dest is one destination entry of a rule's allow: or deny: list:
// "CIDR|NAME [port N|N-M] [tcp|udp] [in|out]". Exactly one of Prefix and
// Name is set.
type Dest struct {
	Prefix netip.Prefix // masked; IPv4 prefixes are kept as IPv4
	// Name is a DNS name in canonical form (lower case, ASCII/punycode, no
	// trailing dot), or "*." and such a name for every name below it.
	Name   string
	PortLo uint16 // 0 with PortHi 0 means any port
	PortHi uint16
	Proto  Proto
	Dir    Direction
	Line   int // line in the policy file, 0 when built in code
}

// AnyPort reports whether the entry matches every port.
func (d Dest) AnyPort() bool { return d.PortLo == 0 && d.PortHi == 0 }

// IsName reports whether the entry is a DNS name (or wildcard) entry.
func (d Dest) IsName() bool { return d.Name != "" }

// String renders the entry in the policy file's syntax.
func (d Dest) String() string {
	s := d.Prefix.String()
	if d.IsName() {
		s = d.Name
	}
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
	if d.Dir != DirBoth {
		s += " " + d.Dir.String()
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
	// DefaultInbound is what unlisted programs accept. Absent from the file
	// it is allow (the zero value), so existing servers stay reachable;
	// InboundSet says the file gave it.
	DefaultInbound Action
	InboundSet     bool
	// Resolvers are the DNS servers whose answers teach name entries; empty
	// means the host's. A port of 0 means 53.
	Resolvers []netip.AddrPort
	Rules     []Rule
}

// HasNames reports whether any rule has a name entry.
func (p *Policy) HasNames() bool {
	for i := range p.Rules {
		if p.Rules[i].HasNames() {
			return true
		}
	}
	return false
}

// HasNames reports whether the rule has a name entry.
func (r *Rule) HasNames() bool {
	for _, d := range r.Allow {
		if d.IsName() {
			return true
		}
	}
	for _, d := range r.Deny {
		if d.IsName() {
			return true
		}
	}
	return false
}

// HasInbound reports whether the policy restricts anything inbound beyond
// what outbound-only policies did: a default_inbound other than allow, or an
// entry limited to "in". Backends that do not judge inbound refuse such a
// policy.
func (p *Policy) HasInbound() bool {
	if p.DefaultInbound != ActionAllow {
		return true
	}
	for i := range p.Rules {
		for _, d := range append(append([]Dest(nil), p.Rules[i].Allow...), p.Rules[i].Deny...) {
			if d.Dir == DirIn {
				return true
			}
		}
	}
	return false
}

// DefaultPolicy is what a daemon starts from when there is no policy file.
func DefaultPolicy() *Policy { return &Policy{Default: ActionAllow, Mode: ModeEnforce} }

// Clone returns a deep copy.
func (p *Policy) Clone() *Policy {
	c := &Policy{Default: p.Default, Mode: p.Mode, DefaultInbound: p.DefaultInbound, InboundSet: p.InboundSet,
		Resolvers: append([]netip.AddrPort(nil), p.Resolvers...), Rules: make([]Rule, len(p.Rules))}
	// Every rule's entries share one array (two allocations for the whole
	// policy, not two per rule); each slice is capped at its own length,
	// so an append to one rule's list copies it rather than overwrite the
	// next rule's.
	n := 0
	for i := range p.Rules {
		n += len(p.Rules[i].Allow) + len(p.Rules[i].Deny)
	}
	dests := make([]Dest, 0, n)
	take := func(d []Dest) []Dest {
		if len(d) == 0 {
			return nil
		}
		at := len(dests)
		dests = append(dests, d...)
		return dests[at:len(dests):len(dests)]
	}
	for i, r := range p.Rules {
		r.Allow = take(r.Allow)
		r.Deny = take(r.Deny)
		c.Rules[i] = r
	}
	return c
}

// Equal says whether p and q say the same, line numbers included; nil
// and empty lists are equal (a file with `rules: []` and one without a
// rules key are one policy). It allocates nothing, unlike a DeepEqual of
// clones: the periodic sync asks it of the whole policy.
func (p *Policy) Equal(q *Policy) bool {
	if p == q {
		return true
	}
	if p == nil || q == nil || p.Default != q.Default || p.Mode != q.Mode || p.DefaultInbound != q.DefaultInbound ||
		p.InboundSet != q.InboundSet || !slices.Equal(p.Resolvers, q.Resolvers) {
		return false
	}
	return slices.EqualFunc(p.Rules, q.Rules, func(a, b Rule) bool {
		return a.Name == b.Name && a.Selector == b.Selector && a.Action == b.Action && a.Audit == b.Audit &&
			a.Line == b.Line && slices.Equal(a.Allow, b.Allow) && slices.Equal(a.Deny, b.Deny)
	})
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
