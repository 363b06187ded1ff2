//go:build linux

package linux

import (
	"net/netip"

	"github.com/exewall/exewall/engine"
)

// judgeAcceptedInbound is off only in tests (EXEWALL_TEST_SABOTAGE=inbound):
// accepted sockets are then judged as outbound connections, as before.
var judgeAcceptedInbound = true

// judgeAccepted decides an accepted TCP socket (its creator is its
// listener's) as the ingress hook decides its SYN: the rule of the creator,
// the peer as the address, the local port as the port, the default only
// through default_inbound (DESIGN.md "How a connection is judged", rule 5).
// A tightening then cuts accepted connections the new rule would refuse.
func (b *Backend) judgeAccepted(c *compiled, p *engine.Policy, gen uint32, r *heldRec, cgroupPaths map[uint64]string, ruleOf func(uint32) *engine.Rule) engine.Verdict {
	o := r.Owner
	var rule *datapathRule
	if o.HasExe == 1 {
		if dr, ok := c.exe[datapathExeKey{Id: o.Exe, Gen: gen}]; ok {
			rule = &dr
		}
	}
	if rule == nil && c.config.HasCgroupRules == 1 {
		rule = b.heldCgroupRule(c, gen, o.Cgroup, cgroupPaths)
	}
	if rule == nil {
		if dr, ok := c.uids[datapathIdKey{Id: uint64(o.Uid), Gen: gen}]; ok {
			rule = &dr
		} else if dr, ok := c.gids[datapathIdKey{Id: uint64(o.Gid), Gen: gen}]; ok {
			rule = &dr
		}
	}
	var peer netip.Addr
	if r.Family == 4 {
		peer = netip.AddrFrom4([4]byte(r.Daddr[:4]))
	} else {
		peer = netip.AddrFrom16(r.Daddr).Unmap()
	}
	action, audit := p.DefaultInbound, false
	if rule != nil {
		pr := ruleOf(rule.Id &^ genBit)
		if pr == nil {
			return engine.VerdictAllow
		}
		action, audit = pr.Action, pr.Audit
		a := engine.Attempt{Dir: engine.DirIn, Addr: peer, Port: r.sport, Proto: engine.Proto(r.Proto)}
		if m, ok := engine.MatchAttempt(pr, a, nil); ok {
			if m.Verdict == engine.VerdictAllow {
				return m.Verdict
			}
			return denyOrAudit(audit || p.Mode == engine.ModeAudit)
		}
	}
	switch {
	case action == engine.ActionAllow:
		return engine.VerdictAllow
	case action == engine.ActionLocalOnly && engine.IsLocal(peer, b.hostNets):
		return engine.VerdictAllow
	}
	return denyOrAudit(audit || p.Mode == engine.ModeAudit)
}
