package darwin

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/exewall/exewall/engine"
)

// AnchorPath is exewall's pf anchor. Apple's default /etc/pf.conf evaluates
// only `anchor "com.apple/*"`, so a sub-anchor there is evaluated without
// touching pf.conf or the main ruleset.
const AnchorPath = "com.apple/exewall"

// localTable is the pf table of destinations `local-only` allows.
const localTable = "exewall_local"

// labelPrefix starts every label we write, so ours are told apart from
// anyone else's in `pfctl -s labels`.
const labelPrefix = "exewall:"

// ruleLabel says what a pf rule of ours stands for. pf carries the label into
// `pfctl -sr` and rule counters, not into pflog, so Anchor reads the rule
// numbers back after each load to map log lines to labels.
type ruleLabel struct {
	Rule    string         // the policy rule's name; "" for the default
	Verdict engine.Verdict // allow, deny or audit
}

// ruleset is a policy rendered for pf.
type ruleset struct {
	Text   string               // pf.conf text for AnchorPath
	Labels map[string]ruleLabel // every label in Text
	Rules  int                  // policy rules enforced (user: and group: rules)
}

// renderRuleset turns p into the pf ruleset of exewall's anchor. hostNets are the
// host's on-link subnets, which `local-only` counts as local.
//
// The whole policy is one flat anchor: `pfctl -a com.apple/exewall -f -`
// replaces its rules and tables in one transaction, so an apply is atomic
// and removal is a single flush.
//
// exewall must decide within its anchor without ending pf's evaluation for
// traffic it lets through: a quick pass would skip every rule after the
// anchor, a VPN kill switch included. So the anchor works in two steps:
//
//  1. Tagging rules, none of them quick, written from the least specific to
//     the most specific so that pf's "last match wins" picks the same rule
//     as the engine's evaluator: the default (for every socket's TCP and
//     UDP, and ping), then group: rules, then user: rules (the engine tries
//     the uid before the gid), each with its action first and then its
//     destination entries from the least specific (engine.OrderedDests
//     read backwards). Each tags the packet with its verdict and rule; an
//     allow also passes it, without quick, so later rules still judge it.
//  2. One block (or, audited, one logged pass, not quick) per denying tag,
//     for TCP only with `flags S/SA`: only connection attempts are judged,
//     as on Linux. A server's SYN-ACK, loopback included, and the packets
//     of connections open before the rules were loaded are never blocked;
//     pf's default pass keeps no state for them, so a block without flags
//     would cut every server and every existing connection.
//
// pf can tie only TCP and UDP packets to a socket's owner, so user: and
// group: rules judge TCP and UDP; ICMP from anyone falls to the default.
// Only outbound packets are judged, like the connect/sendmsg hooks on
// Linux: replies to allowed connections pass through pf's state table.
//
// exe: rules are not pf's: the Application Firewall enforces them (appfw.go)
// and checkSelectors lets through only those it can; cgroup: rules are
// refused with an error wrapping engine.ErrNotSupported.
func renderRuleset(p *engine.Policy, hostNets []netip.Prefix) (*ruleset, error) {
	if p == nil {
		return nil, errors.New("no policy")
	}
	if err := checkSelectors(p); err != nil {
		return nil, err
	}
	g := &generator{p: p, hostNets: hostNets, labels: map[string]ruleLabel{}}
	// uid rules before gid rules, each in file order: a socket has one uid
	// and one gid, so the order within each group cannot change a verdict.
	for i := range p.Rules {
		if p.Rules[i].User != "" {
			if err := g.rule(i); err != nil {
				return nil, err
			}
		}
	}
	for i := range p.Rules {
		if p.Rules[i].Group != "" {
			if err := g.rule(i); err != nil {
				return nil, err
			}
		}
	}
	g.defaults()
	return &ruleset{Text: g.text(), Labels: g.labels, Rules: g.rules}, nil
}

type generator struct {
	p        *engine.Policy
	hostNets []netip.Prefix

	tables    []string // table lines, LocalTable first when used
	needLocal bool
	sections  []section // policy rules then the default, most important first
	finals    []final   // one per denying tag, in order of first use
	labels    map[string]ruleLabel
	rules     int
}

// section is one policy rule (or the default) rendered: a comment and its
// tagging rules, most specific first.
type section struct {
	comment []string
	rules   []string
}

// final turns a denying tag into pf's action.
type final struct {
	tag   string
	label ruleLabel
	icmp  bool // the default's tag also covers ping
}

// pfRule is one line of pf.conf filter rule.
type pfRule struct {
	pass   bool // pass, or block return (TCP RST, ICMP unreachable: the caller fails fast)
	log    bool
	quick  bool
	af     string // "", inet, inet6
	proto  string // "", tcp, udp, "{ tcp udp }", icmp, icmp6
	to     string
	port   string // "", "443", "1000:2000" (inclusive)
	opts   string // user/group/icmp-type
	syn    bool   // flags S/SA: connection attempts only
	tag    string
	tagged string
	label  string
}

func (r pfRule) String() string {
	var b strings.Builder
	if r.pass {
		b.WriteString("pass out")
	} else {
		b.WriteString("block return out")
	}
	if r.log {
		// (user) makes pf look the socket up even when the rule does not,
		// so the log line carries the uid.
		b.WriteString(" log (user)")
	}
	if r.quick {
		b.WriteString(" quick")
	}
	if r.af != "" {
		b.WriteString(" " + r.af)
	}
	if r.proto != "" {
		b.WriteString(" proto " + r.proto)
	}
	b.WriteString(" from any to " + r.to)
	if r.port != "" {
		b.WriteString(" port " + r.port)
	}
	if r.opts != "" {
		b.WriteString(" " + r.opts)
	}
	if r.syn {
		b.WriteString(" flags S/SA")
	}
	if r.tag != "" {
		fmt.Fprintf(&b, " tag %q", r.tag)
	}
	if r.tagged != "" {
		fmt.Fprintf(&b, " tagged %q", r.tagged)
	}
	if r.label != "" {
		fmt.Fprintf(&b, " label %q", r.label)
	}
	return b.String()
}

func (g *generator) section(format string, args ...any) *section {
	g.sections = append(g.sections, section{comment: []string{"# " + fmt.Sprintf(format, args...)}})
	return &g.sections[len(g.sections)-1]
}

func (sec *section) note(format string, args ...any) {
	sec.comment = append(sec.comment, "# "+fmt.Sprintf(format, args...))
}

// decide adds a tagging rule to sec: r passes (not quick) with the tag of
// its verdict. An allow carries its label, for pf's counters of allowed
// packets; a denial is counted and logged by its final rule.
func (g *generator) decide(sec *section, r pfRule, l ruleLabel, id string, icmp bool) {
	r.pass, r.quick, r.log = true, false, false
	r.tag = label(l.Verdict, id)
	if l.Verdict == engine.VerdictAllow {
		r.label = r.tag
		g.labels[r.label] = l
	} else if !slices.ContainsFunc(g.finals, func(f final) bool { return f.tag == r.tag }) {
		g.finals = append(g.finals, final{tag: r.tag, label: l, icmp: icmp})
	}
	sec.rules = append(sec.rules, r.String())
}

// finalRules act on the denying tags: a block (quick: nothing after exewall
// may let it through) or, audited, a logged pass that is not quick. TCP
// only on connection attempts.
func (g *generator) finalRules() []string {
	var out []string
	for _, f := range g.finals {
		audit := f.label.Verdict == engine.VerdictAudit
		protos := []pfRule{{proto: "tcp", syn: true}, {proto: "udp"}}
		if f.icmp {
			protos = append(protos, pfRule{af: "inet", proto: "icmp"}, pfRule{af: "inet6", proto: "icmp6"})
		}
		for _, r := range protos {
			r.pass, r.quick, r.log = audit, !audit, true
			r.to, r.tagged, r.label = "any", f.tag, f.tag
			g.labels[r.label] = f.label
			out = append(out, r.String())
		}
	}
	return out
}

// label names a pf rule: exewall:<verdict>:<id>, at most 63 bytes (pf's
// PF_RULE_LABEL_SIZE); the id keeps the rule index, so truncation cannot
// merge two rules.
func label(v engine.Verdict, id string) string {
	s := labelPrefix + string(v) + ":" + id
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

func ruleID(i int, name string) string {
	return "r" + strconv.Itoa(i) + "-" + safeName(name)
}

// safeName keeps label text free of quotes and of pf's label macros ($nr...).
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

// selectorOpt renders a user: or group: selector: numbers as ids, names
// quoted for pfctl to resolve when it loads the rules.
func selectorOpt(kind, v string) (string, error) {
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		if n >= math.MaxUint32 { // pf's UID_MAX/GID_MAX means "unknown"
			return "", fmt.Errorf("%s id %d is out of range", kind, n)
		}
		return kind + " = " + v, nil
	}
	for i, c := range []byte(v) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && (c >= '0' && c <= '9' || c == '.' || c == '-')) {
			return "", fmt.Errorf("%s name %q is not a valid macOS %s name", kind, v, kind)
		}
	}
	if v == "" {
		return "", fmt.Errorf("empty %s name", kind)
	}
	return kind + " = " + strconv.Quote(v), nil
}

// run is a stretch of consecutive entries (in evaluation order) with the
// same outcome, port range, protocol and family: one pf rule (or one per
// protocol), its prefixes in a table when there are several.
type run struct {
	verdict  engine.Verdict
	v4       bool
	lo, hi   uint16
	proto    engine.Proto
	prefixes []netip.Prefix
}

func runs(ds []engine.VerdictDest) []run {
	var out []run
	for _, d := range ds {
		v4 := d.Prefix.Addr().Is4()
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.verdict == d.Verdict && last.v4 == v4 && last.lo == d.PortLo && last.hi == d.PortHi && last.proto == d.Proto {
				last.prefixes = append(last.prefixes, d.Prefix)
				continue
			}
		}
		out = append(out, run{d.Verdict, v4, d.PortLo, d.PortHi, d.Proto, []netip.Prefix{d.Prefix}})
	}
	return out
}

func (g *generator) rule(i int) error {
	r := &g.p.Rules[i]
	kind, who := "user", r.User
	if r.Group != "" {
		kind, who = "group", r.Group
	}
	sel, err := selectorOpt(kind, who)
	if err != nil {
		return fmt.Errorf("rule %q: %w", r.Name, err)
	}
	g.rules++
	audit := r.Audit || g.p.Mode == engine.ModeAudit
	id := ruleID(i, r.Name)
	mode := ""
	if audit {
		mode = ", audit"
	}
	sec := g.section("rule %s: %s %s, action %s%s", strconv.Quote(r.Name), kind, strconv.Quote(who), r.Action, mode)
	deny := engine.VerdictDeny
	if audit {
		deny = engine.VerdictAudit
	}

	for k, rn := range runs(engine.OrderedDests(r)) {
		var protos string
		switch rn.proto {
		case engine.ProtoTCP:
			protos = "tcp"
		case engine.ProtoUDP:
			protos = "udp"
		case engine.ProtoICMP:
			sec.note("skipped %s: pf cannot tie ICMP to a %s; the default judges it", describe(rn), kind)
			continue
		default:
			protos = "{ tcp udp }"
		}
		pr := pfRule{af: "inet6", proto: protos, to: g.dest(i, k, rn.prefixes), port: portSpec(rn.lo, rn.hi), opts: sel}
		if rn.v4 {
			pr.af = "inet"
		}
		v := rn.verdict
		if v == engine.VerdictDeny {
			v = deny
		}
		g.decide(sec, pr, ruleLabel{r.Name, v}, id, false)
	}

	// The action catches the rest of this user's or group's TCP and UDP, so
	// nothing of theirs falls through to the default.
	all := pfRule{proto: "{ tcp udp }", to: "any", opts: sel}
	switch r.Action {
	case engine.ActionAllow:
		g.decide(sec, all, ruleLabel{r.Name, engine.VerdictAllow}, id, false)
	case engine.ActionLocalOnly:
		local := all
		local.to = g.local()
		g.decide(sec, local, ruleLabel{r.Name, engine.VerdictAllow}, id, false)
		g.decide(sec, all, ruleLabel{r.Name, deny}, id, false)
	default:
		g.decide(sec, all, ruleLabel{r.Name, deny}, id, false)
	}
	return nil
}

// defaults emits the policy's default. pf cannot select by executable, so
// on macOS the default covers every socket no user:/group: rule matched,
// root and system daemons (mDNSResponder, configd, softwareupdated)
// included. `user >= 0` limits it to packets pf can tie to a local socket:
// forwarded traffic (VMs, Internet Sharing) and the kernel's own packets
// (neighbour discovery, ICMP errors) are not a process's connection, and
// the Linux hooks do not see them either. Of ICMP, only echo requests
// (ping) are judged.
//
// An allowing default adds nothing: traffic no rule matched goes on
// through pf.
func (g *generator) defaults() {
	d := g.p.Default
	audit := g.p.Mode == engine.ModeAudit
	if d == engine.ActionAllow {
		g.section("default: allow. Nothing to add: traffic no rule matched goes on through pf.")
		return
	}
	mode := ""
	if audit {
		mode = ", audit"
	}
	sec := g.section("default: %s%s, for every other socket's TCP and UDP (root and system daemons included) and ping", d, mode)
	to := "any"
	if d == engine.ActionLocalOnly {
		to = "! " + g.local()
	}
	v := engine.VerdictDeny
	if audit {
		v = engine.VerdictAudit
	}
	for _, r := range []pfRule{
		{proto: "{ tcp udp }", opts: "user >= 0"},
		{af: "inet", proto: "icmp", opts: "icmp-type echoreq"},
		{af: "inet6", proto: "icmp6", opts: "icmp6-type echoreq"},
	} {
		r.to = to
		g.decide(sec, r, ruleLabel{"", v}, "default", true)
	}
}

const header = `# exewall: pf ruleset of anchor "` + AnchorPath + `". Generated: every apply
# replaces the whole anchor in one transaction; do not edit.
#
# No rule here passes quick: what exewall allows goes on to the rules after
# this anchor (a VPN kill switch still applies). Tagging rules come first,
# least specific first, so pf's last match picks the deciding one: the
# default, group: rules, then user: rules, each with its action and then
# its destination entries. The rules at the end act on the denying tags;
# TCP only on connection attempts (flags S/SA), so servers' replies and
# connections opened before a change pass. Only outbound packets are
# judged. pf ties only TCP and UDP to a socket's user or group.
`

func (g *generator) text() string {
	var b strings.Builder
	b.WriteString(header)
	if len(g.tables) > 0 {
		b.WriteString("\n")
		for _, t := range g.tables {
			b.WriteString(t + "\n")
		}
	}
	for i := len(g.sections) - 1; i >= 0; i-- {
		sec := g.sections[i]
		b.WriteString("\n")
		for _, c := range sec.comment {
			b.WriteString(c + "\n")
		}
		for j := len(sec.rules) - 1; j >= 0; j-- {
			b.WriteString(sec.rules[j] + "\n")
		}
	}
	if fs := g.finalRules(); len(fs) > 0 {
		b.WriteString("\n# decisions: act on the denying tags\n")
		for _, f := range fs {
			b.WriteString(f + "\n")
		}
	}
	return b.String()
}
