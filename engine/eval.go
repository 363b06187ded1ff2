package engine

import (
	"net/netip"
	"sort"
	"strings"
)

// Subject is the process making a connection attempt, as the kernel sees it.
type Subject struct {
	Kernel bool   // a task with no user memory (kernel thread): always allowed
	Exe    FileID // identity of the running executable
	HasExe bool   // false when the task has no executable file
	Cgroup string // cgroup v2 path relative to the mount, "/a/b"
	UID    uint32
	GID    uint32
}

// Decision is the reference evaluator's answer.
type Decision struct {
	Verdict Verdict
	Rule    string // "" for the default
}

// Evaluator is the pure-Go reference of how a connection is judged
// (DESIGN.md "How a connection is judged"). Every backend must agree with it;
// the Linux kernel tests check the eBPF datapath against it case by case.
type Evaluator struct {
	policy   *Policy
	exeRules map[FileID]int
	uidRules map[uint32]int
	gidRules map[uint32]int
	hostNets []netip.Prefix
}

// NewEvaluator prepares p for evaluation. Exe rules are resolved with r;
// rules whose executable does not exist match nothing.
func NewEvaluator(p *Policy, r Resolver, hostNets []netip.Prefix) (*Evaluator, error) {
	e := &Evaluator{policy: p, exeRules: map[FileID]int{}, uidRules: map[uint32]int{}, gidRules: map[uint32]int{}, hostNets: hostNets}
	for i, rule := range p.Rules {
		switch {
		case rule.Exe != "":
			id, ok, err := r.Identify(rule.Exe)
			if err != nil {
				return nil, err
			}
			if ok {
				e.exeRules[id] = i
			}
		case rule.User != "":
			uid, err := LookupUID(rule.User)
			if err != nil {
				return nil, err
			}
			e.uidRules[uid] = i
		case rule.Group != "":
			gid, err := LookupGID(rule.Group)
			if err != nil {
				return nil, err
			}
			e.gidRules[gid] = i
		}
	}
	return e, nil
}

// SelectRule returns the index of the rule covering s, or -1 for the default:
// the executable's rule, else the deepest cgroup rule, else uid, else gid.
func (e *Evaluator) SelectRule(s Subject) int {
	if s.HasExe {
		if i, ok := e.exeRules[s.Exe]; ok {
			return i
		}
	}
	best, bestDepth := -1, -1
	for i, rule := range e.policy.Rules {
		if rule.Cgroup == "" || !CgroupContains(rule.Cgroup, s.Cgroup) {
			continue
		}
		if d := CgroupDepth(rule.Cgroup); d > bestDepth {
			best, bestDepth = i, d
		}
	}
	if best >= 0 {
		return best
	}
	if i, ok := e.uidRules[s.UID]; ok {
		return i
	}
	if i, ok := e.gidRules[s.GID]; ok {
		return i
	}
	return -1
}

// Evaluate judges one attempt to reach dst:port over proto.
func (e *Evaluator) Evaluate(s Subject, dst netip.Addr, port uint16, proto Proto) Decision {
	if s.Kernel {
		return Decision{Verdict: VerdictAllow}
	}
	i := e.SelectRule(s)
	if i < 0 {
		return e.finish(e.policy.Default, false, "", dst)
	}
	rule := &e.policy.Rules[i]
	if v, ok := MatchDests(rule, dst, port, proto); ok {
		if v == VerdictAllow {
			return Decision{Verdict: VerdictAllow, Rule: rule.Name}
		}
		return e.deny(rule.Audit, rule.Name)
	}
	return e.finish(rule.Action, rule.Audit, rule.Name, dst)
}

func (e *Evaluator) finish(a Action, audit bool, name string, dst netip.Addr) Decision {
	switch a {
	case ActionAllow:
		return Decision{Verdict: VerdictAllow, Rule: name}
	case ActionLocalOnly:
		if IsLocal(dst, e.hostNets) {
			return Decision{Verdict: VerdictAllow, Rule: name}
		}
	}
	return e.deny(audit, name)
}

func (e *Evaluator) deny(audit bool, name string) Decision {
	if audit || e.policy.Mode == ModeAudit {
		return Decision{Verdict: VerdictAudit, Rule: name}
	}
	return Decision{Verdict: VerdictDeny, Rule: name}
}

// OrderedDests returns a rule's allow and deny entries in the order they are
// tried: most specific prefix first; at equal length deny before allow, then
// file order.
func OrderedDests(r *Rule) []VerdictDest {
	out := make([]VerdictDest, 0, len(r.Allow)+len(r.Deny))
	for _, d := range r.Deny {
		out = append(out, VerdictDest{d, VerdictDeny})
	}
	for _, d := range r.Allow {
		out = append(out, VerdictDest{d, VerdictAllow})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Prefix.Bits() > out[j].Prefix.Bits() })
	return out
}

// VerdictDest is a destination entry with the verdict of the list it is in.
type VerdictDest struct {
	Dest
	Verdict Verdict
}

// Matches reports whether the entry covers dst:port over proto. IPv4-mapped
// IPv6 destinations are IPv4; an IPv4 prefix never matches an IPv6 address
// and an IPv6 prefix (even ::/0) never matches an IPv4 one.
func (d Dest) Matches(dst netip.Addr, port uint16, proto Proto) bool {
	dst = dst.Unmap()
	if d.Prefix.Addr().Is4() != dst.Is4() || !d.Prefix.Contains(dst) {
		return false
	}
	if d.Proto != ProtoAny && d.Proto != proto {
		return false
	}
	if !d.AnyPort() && (port < d.PortLo || port > d.PortHi) {
		return false
	}
	return true
}

// MatchDests tries a rule's entries in order; ok is false when none matches.
func MatchDests(r *Rule, dst netip.Addr, port uint16, proto Proto) (Verdict, bool) {
	for _, d := range OrderedDests(r) {
		if d.Matches(dst, port, proto) {
			return d.Verdict, true
		}
	}
	return "", false
}

// CgroupContains reports whether cgroup path outer is inner or an ancestor.
func CgroupContains(outer, inner string) bool {
	outer, inner = CleanCgroup(outer), CleanCgroup(inner)
	if outer == "/" {
		return true
	}
	return inner == outer || strings.HasPrefix(inner, outer+"/")
}

// CgroupDepth is the number of path components: "/" is 0, "/a/b" is 2.
func CgroupDepth(p string) int {
	p = CleanCgroup(p)
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

// CleanCgroup normalizes a cgroup path to "/a/b" form.
func CleanCgroup(p string) string {
	p = "/" + strings.Trim(p, "/")
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return p
}
