package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"
)

// Listener is a socket that accepts from remote peers right now: a TCP
// listener, or a bound UDP socket, of a process under the attach point.
type Listener struct {
	// Owner is the process the datapath attributes the socket to (its
	// creator where the kernel recorded one).
	Owner Subject `json:"-"`
	PID   uint32  `json:"pid"`
	Comm  string  `json:"comm"`
	// Exe is the owner's executable path, for people ("" when unknown).
	Exe   string         `json:"exe"`
	Proto Proto          `json:"-"`
	Local netip.AddrPort `json:"local"`
}

// ListenerLister is implemented by backends that can list the sockets
// listening right now (Linux: the kernel's socket tables). The Manager
// uses it to refuse a change that would cut a server (DESIGN.md "How a
// connection is judged", rule 5) unless forced. Listeners on loopback may
// be left out; the Manager ignores them.
type ListenerLister interface {
	Listeners(ctx context.Context) ([]Listener, error)
}

// Cut is a listener a policy change stops from accepting a peer it
// accepted before.
type Cut struct {
	Listener
	Proto string     `json:"proto"`
	Rule  string     `json:"rule"` // the rule refusing it now; "" is the default
	Peer  netip.Addr `json:"peer"` // a peer accepted before and refused after
}

func (c Cut) String() string {
	who := c.Comm
	if c.Exe != "" {
		who = c.Exe
	}
	if who == "" {
		who = "?"
	}
	rule := "the default (default_inbound)"
	if c.Rule != "" {
		rule = fmt.Sprintf("rule %q", c.Rule)
	}
	return fmt.Sprintf("%s (pid %d) %s port %d on %s, by %s (e.g. from %s)",
		who, c.PID, c.Proto, c.Local.Port(), c.Local.Addr(), rule, c.Peer)
}

// ErrWouldCut is wrapped by a *CutError.
var ErrWouldCut = errors.New("the change would cut sockets listening now")

// CutError refuses a change that would cut listening sockets; forcing the
// change (--force) puts it in force anyway.
type CutError struct{ Cuts []Cut }

func (e *CutError) Error() string {
	var s []string
	for i, c := range e.Cuts {
		if i == 5 {
			s = append(s, fmt.Sprintf("and %d more", len(e.Cuts)-5))
			break
		}
		s = append(s, c.String())
	}
	return fmt.Sprintf("%v: %s", ErrWouldCut, strings.Join(s, "; "))
}

func (e *CutError) Unwrap() error { return ErrWouldCut }

// CutReport is what the daemon applied although it cut listeners (start,
// reload, managed mode, rollback), for status.
type CutReport struct {
	Time time.Time `json:"time"`
	Why  string    `json:"why"` // "load", "reload", "rollback" ...
	Cuts []Cut     `json:"cuts"`
}

// representative peers tried besides the boundaries of the rules' entries:
// public, private, link-local and metadata addresses of both families.
var samplePeers = []netip.Addr{
	netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("10.1.2.3"),
	netip.MustParseAddr("172.16.1.1"), netip.MustParseAddr("192.168.1.2"), netip.MustParseAddr("169.254.1.1"),
	netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("2606:4700::1111"), netip.MustParseAddr("2001:db8::7"),
	netip.MustParseAddr("fd12::1"), netip.MustParseAddr("fe80::1"), netip.MustParseAddr("fd00:ec2::254"),
}

// WouldCut returns the listeners that accept some non-loopback peer under
// old and refuse it under next (an audited refusal does not cut). Both
// policies are judged with the reference evaluator, so the answer does not
// depend on what the backend enforces inbound yet.
func WouldCut(old, next *Policy, ls []Listener, r Resolver, hostNets []netip.Prefix) ([]Cut, error) {
	var live []Listener
	for _, l := range ls {
		if a := l.Local.Addr().Unmap(); !a.IsLoopback() && l.Local.Port() != 0 {
			live = append(live, l)
		}
	}
	if len(live) == 0 {
		return nil, nil
	}
	eo, err := NewEvaluator(old, r, hostNets)
	if err != nil {
		return nil, err
	}
	en, err := NewEvaluator(next, r, hostNets)
	if err != nil {
		return nil, err
	}
	var cuts []Cut
	for _, l := range live {
		peers := candidatePeers(l.Local.Addr(), hostNets, ruleOf(eo, l.Owner), ruleOf(en, l.Owner))
		for _, peer := range peers {
			a := Attempt{Dir: DirIn, Addr: peer, Port: l.Local.Port(), Proto: l.Proto}
			if eo.Judge(l.Owner, a).Verdict == VerdictDeny {
				continue
			}
			if d := en.Judge(l.Owner, a); d.Verdict == VerdictDeny {
				cuts = append(cuts, Cut{Listener: l, Proto: l.Proto.String(), Rule: d.Rule, Peer: peer})
				break
			}
		}
	}
	sort.SliceStable(cuts, func(i, j int) bool { return cuts[i].Local.Port() < cuts[j].Local.Port() })
	return cuts, nil
}

func ruleOf(e *Evaluator, s Subject) *Rule {
	if s.Kernel {
		return nil
	}
	if i := e.SelectRule(s); i >= 0 {
		return &e.policy.Rules[i]
	}
	return nil
}

// candidatePeers are the peers a socket bound to local can hear from whose
// verdicts stand for all of them: the samples, and the first and last
// address of every entry's prefix and the addresses just outside it (the
// verdict only changes at those boundaries).
func candidatePeers(local netip.Addr, hostNets []netip.Prefix, rules ...*Rule) []netip.Addr {
	v4, v6 := true, true
	switch {
	case local.Is4() || local.Is4In6() && !local.Unmap().IsUnspecified():
		v6 = false
	case !local.IsUnspecified():
		v4 = false
	}
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	add := func(a netip.Addr) {
		if !a.IsValid() || a.IsLoopback() || a.IsUnspecified() || seen[a] || a.Is4() && !v4 || a.Is6() && !v6 {
			return
		}
		seen[a] = true
		out = append(out, a)
	}
	bounds := func(p netip.Prefix) {
		first := p.Masked().Addr()
		last := lastAddr(p)
		add(first)
		add(last)
		add(first.Prev())
		add(last.Next())
	}
	for _, a := range samplePeers {
		add(a)
	}
	for _, p := range hostNets {
		bounds(p)
	}
	for _, r := range rules {
		if r == nil {
			continue
		}
		for _, d := range append(append([]Dest(nil), r.Allow...), r.Deny...) {
			if !d.IsName() {
				bounds(d.Prefix)
			}
		}
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range a {
		for b := 0; b < 8; b++ {
			if i*8+b >= bits {
				a[i] |= 0x80 >> b
			}
		}
	}
	out, _ := netip.AddrFromSlice(a)
	return out
}

// ChangeOption modifies how a change is made.
type ChangeOption func(*changeOpts)

type changeOpts struct{ force bool }

// Force makes a change that would cut listening sockets anyway.
func Force() ChangeOption { return func(o *changeOpts) { o.force = true } }

func changeOptions(opts []ChangeOption) changeOpts {
	var o changeOpts
	for _, f := range opts {
		f(&o)
	}
	return o
}

// listeners asks a ListenerLister backend for what listens now (nil when
// the backend cannot tell).
func (m *Manager) listeners(ctx context.Context) ([]Listener, error) {
	ll, ok := m.cfg.Backend.(ListenerLister)
	if !ok {
		return nil, nil
	}
	return ll.Listeners(ctx)
}

// checkCuts refuses next when it would cut listeners, unless forced; it
// returns the cuts a forced change makes, for reportCuts once it is in
// force. m.mu is held.
func (m *Manager) checkCuts(ctx context.Context, next *Policy, o changeOpts) ([]Cut, error) {
	cuts, err := m.cuts(ctx, m.policy, next)
	if err != nil {
		if o.force {
			m.log.Warn("listening sockets could not be checked; forced change goes ahead", "err", err)
			return nil, nil
		}
		return nil, fmt.Errorf("check the sockets listening now (--force skips the check): %w", err)
	}
	if len(cuts) > 0 && !o.force {
		return nil, &CutError{Cuts: cuts}
	}
	return cuts, nil
}

// cuts is WouldCut with what the backend lists now.
func (m *Manager) cuts(ctx context.Context, old, next *Policy) ([]Cut, error) {
	if old == nil {
		return nil, nil
	}
	ls, err := m.listeners(ctx)
	if err != nil || len(ls) == 0 {
		return nil, err
	}
	return WouldCut(old, next, ls, m.cfg.Resolver, m.cfg.HostNets())
}

// neverDeniesInbound says whether p denies no inbound attempt whatever the
// listener: no rule, and default_inbound allows or the mode only audits.
// Nothing can be cut then: a change never refused (applyCuts: a start
// with no rules, say) does not list the sockets (a netlink dump of every
// TCP and UDP socket, several ms of a daemon's start). A change that can
// be refused still lists them, and a listing failure still refuses it.
func neverDeniesInbound(p *Policy) bool {
	return len(p.Rules) == 0 && (p.DefaultInbound == ActionAllow || p.Mode == ModeAudit)
}

// applyCuts is for changes that are never refused (start, reload, managed
// mode, rollback): the cuts next makes, to report once it is in force.
func (m *Manager) applyCuts(ctx context.Context, old, next *Policy, why string) []Cut {
	if neverDeniesInbound(next) {
		return nil
	}
	cuts, err := m.cuts(ctx, old, next)
	if err != nil {
		m.log.Warn("listening sockets could not be checked", "why", why, "err", err)
	}
	return cuts
}

// reportCuts logs and counts the listeners a change in force cut. m.mu is
// held.
func (m *Manager) reportCuts(why string, cuts []Cut) {
	if len(cuts) == 0 {
		return
	}
	for _, c := range cuts {
		m.log.Warn("policy change cuts a listening socket", "why", why, "socket", c.String())
	}
	m.cutTotal += uint64(len(cuts))
	m.lastCut = &CutReport{Time: time.Now(), Why: why, Cuts: cuts}
}
