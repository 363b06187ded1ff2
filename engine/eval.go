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
	Name    string // the name entry that decided, when one did
}

// Attempt is one connection attempt. Out: Addr is the destination and Port
// its port. In: Addr is the remote peer and Port the local port.
type Attempt struct {
	Dir   Direction // DirOut or DirIn
	Addr  netip.Addr
	Port  uint16
	Proto Proto
}

// Evaluator is the pure-Go reference of how a connection is judged
// (DESIGN.md "How a connection is judged"). Every backend must agree with it;
// the Linux kernel tests check the eBPF datapath against it case by case.
type Evaluator struct {
	policy   *Policy
	judged   *Policy // policy with its rules' default denies (encdns.go)
	exeRules map[FileID]int
	uidRules map[uint32]int
	gidRules map[uint32]int
	hostNets []netip.Prefix
	// bound holds the name bindings in force: rule name -> address -> the
	// names answered with it (DESIGN.md "Destination entries").
	bound map[string]map[netip.Addr][]string
}

// NewEvaluator prepares p for evaluation (with the default encrypted-DNS
// denies of rules with name entries, WithEncryptedDNSDenied). Exe rules are resolved with r;
// rules whose executable does not exist match nothing.
func NewEvaluator(p *Policy, r Resolver, hostNets []netip.Prefix) (*Evaluator, error) {
	r = identifyRules(onePass(r), p.Rules)
	e := &Evaluator{policy: p, judged: WithEncryptedDNSDenied(p), exeRules: map[FileID]int{}, uidRules: map[uint32]int{}, gidRules: map[uint32]int{}, hostNets: hostNets}
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

// Bind records that a process of rule received addr in a DNS answer for
// name (each name of a CNAME chain is bound), as a trusted resolver's answer
// does in the kernel. Expiry is the caller's: Unbind.
func (e *Evaluator) Bind(rule, name string, addr netip.Addr) {
	if e.bound == nil {
		e.bound = map[string]map[netip.Addr][]string{}
	}
	byAddr := e.bound[rule]
	if byAddr == nil {
		byAddr = map[netip.Addr][]string{}
		e.bound[rule] = byAddr
	}
	addr = addr.Unmap()
	byAddr[addr] = append(byAddr[addr], name)
}

// Unbind forgets every binding of addr for rule (its TTL ran out).
func (e *Evaluator) Unbind(rule string, addr netip.Addr) {
	delete(e.bound[rule], addr.Unmap())
}

// Evaluate judges one attempt to reach dst:port over proto.
func (e *Evaluator) Evaluate(s Subject, dst netip.Addr, port uint16, proto Proto) Decision {
	return e.Judge(s, Attempt{Dir: DirOut, Addr: dst, Port: port, Proto: proto})
}

// Judge judges one attempt, outbound or inbound (DESIGN.md "How a
// connection is judged", rule 5: the same verdict, the peer as the address,
// the local port as the port; the default governs inbound only through
// default_inbound).
func (e *Evaluator) Judge(s Subject, a Attempt) Decision {
	if s.Kernel {
		return Decision{Verdict: VerdictAllow}
	}
	i := e.SelectRule(s)
	if i < 0 {
		def := e.policy.Default
		if a.Dir == DirIn {
			def = e.policy.DefaultInbound
		}
		return e.finish(def, false, "", a.Addr)
	}
	rule := &e.judged.Rules[i]
	if m, ok := MatchAttempt(rule, a, e.bound[rule.Name][a.Addr.Unmap()]); ok {
		if m.Verdict == VerdictAllow {
			return Decision{Verdict: VerdictAllow, Rule: rule.Name, Name: m.Name}
		}
		d := e.deny(rule.Audit, rule.Name)
		d.Name = m.Name
		return d
	}
	return e.finish(rule.Action, rule.Audit, rule.Name, a.Addr)
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
// A name entry never matches here: it needs the bindings (MatchAttempt).
func (d Dest) Matches(dst netip.Addr, port uint16, proto Proto) bool {
	dst = dst.Unmap()
	if d.IsName() || d.Prefix.Addr().Is4() != dst.Is4() || !d.Prefix.Contains(dst) {
		return false
	}
	return d.portProtoMatch(port, proto)
}

// MatchDests tries a rule's entries for an outbound attempt with no name
// bindings; ok is false when none matches.
func MatchDests(r *Rule, dst netip.Addr, port uint16, proto Proto) (Verdict, bool) {
	m, ok := MatchAttempt(r, Attempt{Dir: DirOut, Addr: dst, Port: port, Proto: proto}, nil)
	return m.Verdict, ok
}

// Match is the entry that decided an attempt.
type Match struct {
	Verdict Verdict
	Name    string // the entry's name, for a name entry
}

// MatchAttempt tries a rule's entries that cover a.Dir; names are the DNS
// names this rule's processes were answered a.Addr for. A name entry
// matching one of them counts as a host entry (/32, /128). The most specific
// matching entry decides; among equally specific ones deny wins, then file
// order. ok is false when none matches.
func MatchAttempt(r *Rule, a Attempt, names []string) (Match, bool) {
	addr := a.Addr.Unmap()
	best, found := Match{}, false
	bestBits := -1
	try := func(d Dest, v Verdict) {
		if !d.Dir.Covers(a.Dir) || !d.portProtoMatch(a.Port, a.Proto) {
			return
		}
		bits := d.Prefix.Bits()
		if d.IsName() {
			if !anyNameMatches(d.Name, names) {
				return
			}
			bits = addr.BitLen()
		} else if !d.Matches(addr, a.Port, a.Proto) {
			return
		}
		if bits > bestBits || bits == bestBits && v == VerdictDeny && best.Verdict != VerdictDeny {
			best, bestBits, found = Match{Verdict: v, Name: d.Name}, bits, true
		}
	}
	for _, d := range r.Deny {
		try(d, VerdictDeny)
	}
	for _, d := range r.Allow {
		try(d, VerdictAllow)
	}
	return best, found
}

func anyNameMatches(entry string, names []string) bool {
	for _, n := range names {
		if NameMatches(entry, n) {
			return true
		}
	}
	return false
}

func (d Dest) portProtoMatch(port uint16, proto Proto) bool {
	if d.Proto != ProtoAny && d.Proto != proto {
		return false
	}
	return d.AnyPort() || port >= d.PortLo && port <= d.PortHi
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
