package windows

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/exewall/exewall/engine"
)

// layer is the WFP layer a filter is added to. The ALE connect layers see
// the first packet of every outbound TCP connection and of every
// UDP/raw-socket flow to a new remote address, which is what the Linux
// cgroup connect/sendmsg hooks see. The ALE receive/accept layers see every
// TCP connection a program accepts and the first datagram of every flow
// from a new remote peer to a program's socket: inbound (DESIGN.md rule 5).
// Replies on a flow the program opened were authorized at connect and do
// not pass them. (ALE_AUTH_LISTEN has no remote address and would make
// listen() itself fail, so it is not used.)
type layer uint8

const (
	layerConnectV4 layer = iota + 1 // FWPM_LAYER_ALE_AUTH_CONNECT_V4
	layerConnectV6                  // FWPM_LAYER_ALE_AUTH_CONNECT_V6
	layerRecvV4                     // FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4
	layerRecvV6                     // FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V6
)

var (
	outLayers = []layer{layerConnectV4, layerConnectV6}
	inLayers  = []layer{layerRecvV4, layerRecvV6}
)

func (l layer) String() string {
	switch l {
	case layerConnectV4:
		return "ALE_AUTH_CONNECT_V4"
	case layerConnectV6:
		return "ALE_AUTH_CONNECT_V6"
	case layerRecvV4:
		return "ALE_AUTH_RECV_ACCEPT_V4"
	case layerRecvV6:
		return "ALE_AUTH_RECV_ACCEPT_V6"
	}
	return fmt.Sprintf("layer(%d)", uint8(l))
}

// inbound reports whether the layer judges what a program accepts.
func (l layer) inbound() bool { return l == layerRecvV4 || l == layerRecvV6 }

// v6 reports whether the layer sees IPv6.
func (l layer) v6() bool { return l == layerConnectV6 || l == layerRecvV6 }

// dir is the engine direction the layer judges.
func (l layer) dir() engine.Direction {
	if l.inbound() {
		return engine.DirIn
	}
	return engine.DirOut
}

// layerOf is the layer of p's family in the direction of in.
func layerOf(p netip.Prefix, in bool) layer {
	switch {
	case in && p.Addr().Is4():
		return layerRecvV4
	case in:
		return layerRecvV6
	case p.Addr().Is4():
		return layerConnectV4
	}
	return layerConnectV6
}

// filterAction is a filter's WFP action.
type filterAction uint8

const (
	actionPermit filterAction = iota + 1 // FWP_ACTION_PERMIT
	actionBlock                          // FWP_ACTION_BLOCK, with the action right cleared (hard block)
)

func (a filterAction) String() string {
	switch a {
	case actionPermit:
		return "permit"
	case actionBlock:
		return "block"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// IP protocol numbers as WFP's FWPM_CONDITION_IP_PROTOCOL sees them.
const (
	protoICMP   uint8 = 1
	protoTCP    uint8 = 6
	protoUDP    uint8 = 17
	protoICMPv6 uint8 = 58
)

func protoName(p uint8) string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case protoICMP, protoICMPv6:
		return "icmp"
	}
	return strconv.Itoa(int(p))
}

// filter describes one WFP filter exewall adds. All conditions are ANDed; a
// zero condition matches everything. The adapter (backend_windows.go) turns
// it into a wf.Rule in exewall's sublayer.
type filter struct {
	Layer  layer
	Action filterAction
	// Audit marks a permit that stands where an enforced policy would block:
	// the rule (or the whole policy) is in audit mode.
	Audit bool
	// Weight orders the filters of exewall's sublayer: WFP tries the
	// matching filters from the highest weight down and the first permit or
	// block decides, exactly like engine.MatchDests' first match.
	Weight uint64

	Exe   string // FWPM_CONDITION_ALE_APP_ID of this executable path; "" = any app
	User  string // FWPM_CONDITION_ALE_USER_ID: the process token holds this account (name or SID)
	Group string // FWPM_CONDITION_ALE_USER_ID: the process token holds this group (name or SID)
	// FWPM_CONDITION_IP_REMOTE_ADDRESS (inbound: the peer); invalid or /0 =
	// any address of the layer's family
	Remote netip.Prefix
	Protos []uint8 // FWPM_CONDITION_IP_PROTOCOL, any of these; nil = any protocol
	PortLo uint16  // FWPM_CONDITION_IP_REMOTE_PORT in [PortLo, PortHi]; 0, 0 = any port
	PortHi uint16
	// FWPM_CONDITION_IP_LOCAL_PORT in [LocalLo, LocalHi]; 0, 0 = any. For
	// ICMP the ALE layers put the message type there. Inbound, an entry's
	// ports are local ports (DESIGN.md rule 5).
	LocalLo uint16
	LocalHi uint16

	Rule string // the engine rule's name; "" for the default and for exewall's own filter
	Name string // display name shown by `netsh wfp show filters`
}

// Verdict is what a connection judged by this filter gets from the engine's
// point of view.
func (f filter) Verdict() engine.Verdict {
	switch {
	case f.Audit:
		return engine.VerdictAudit
	case f.Action == actionBlock:
		return engine.VerdictDeny
	}
	return engine.VerdictAllow
}

// String renders the filter on one line; golden files and Sync compare it.
func (f filter) String() string {
	var b strings.Builder
	v := "v4"
	if f.Layer.v6() {
		v = "v6"
	}
	if f.Layer.inbound() {
		v = "in" + v[1:]
	}
	action := f.Action.String()
	if f.Audit {
		action = "permit(audit)"
	}
	fmt.Fprintf(&b, "%s w=%d %s", v, f.Weight, action)
	if f.Exe != "" {
		fmt.Fprintf(&b, " app=%s", quote(f.Exe))
	}
	if f.User != "" {
		fmt.Fprintf(&b, " user=%s", quote(f.User))
	}
	if f.Group != "" {
		fmt.Fprintf(&b, " group=%s", quote(f.Group))
	}
	if f.Remote.IsValid() && f.Remote.Bits() > 0 {
		fmt.Fprintf(&b, " remote=%s", f.Remote)
	}
	if len(f.Protos) > 0 {
		names := make([]string, len(f.Protos))
		for i, p := range f.Protos {
			names[i] = protoName(p)
		}
		fmt.Fprintf(&b, " proto=%s", strings.Join(names, "|"))
	}
	switch {
	case f.PortLo == 0 && f.PortHi == 0:
	case f.PortLo == f.PortHi:
		fmt.Fprintf(&b, " port=%d", f.PortLo)
	default:
		fmt.Fprintf(&b, " port=%d-%d", f.PortLo, f.PortHi)
	}
	switch {
	case f.LocalLo == 0 && f.LocalHi == 0:
	case f.LocalLo == f.LocalHi:
		fmt.Fprintf(&b, " local=%d", f.LocalLo)
	default:
		fmt.Fprintf(&b, " local=%d-%d", f.LocalLo, f.LocalHi)
	}
	rule := f.Rule
	if rule == "" {
		rule = "-"
	}
	fmt.Fprintf(&b, " rule=%s name=%s", quote(rule), quote(f.Name))
	return b.String()
}

// quote puts a value with blanks in double quotes. Backslashes stay as they
// are: Windows paths are full of them and cannot contain a double quote.
func quote(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\"=|") {
		return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
	}
	return s
}

// Well-known local ports of the system's own clients.
const (
	portDHCPClient   = 68
	portDHCPServer   = 67
	portDHCP6Client  = 546
	portDHCP6Server  = 547
	portDNS          = 53
	icmp6RouterSolic = 133
	icmp6RouterAdv   = 134
	icmp6NeighSolic  = 135
	icmp6NeighAdv    = 136
)

// dnscacheService is the service that resolves names for every program on
// Windows: programs ask it over RPC, and it sends the DNS queries.
const dnscacheService = "Dnscache"

// systemFilters permit, above every rule and the default, what Windows
// needs to keep its addresses and resolve names, as WireGuard's and
// Mullvad's block-all policies do: DHCP and DHCPv6 client requests (by
// ports, like WireGuard), IPv6 router and neighbour solicitations and
// neighbour advertisements, and DNS from the DNS Client service (by its
// service SID: programs' own lookups go through it). A program's own
// connections to port 53 are still judged by its rule. Inbound, the DHCP
// and DHCPv6 servers' answers to the client ports and IPv6 router and
// neighbour discovery are permitted, so `default_inbound: deny` keeps the
// host's addresses.
func systemFilters() []filter {
	udp, tcpUDP, icmp6 := []uint8{protoUDP}, []uint8{protoTCP, protoUDP}, []uint8{protoICMPv6}
	dns := serviceSID(dnscacheService)
	return []filter{
		{Layer: layerConnectV4, Action: actionPermit, Protos: udp, LocalLo: portDHCPClient, LocalHi: portDHCPClient,
			PortLo: portDHCPServer, PortHi: portDHCPServer, Name: "exewall: system, DHCP client"},
		{Layer: layerConnectV6, Action: actionPermit, Protos: udp, LocalLo: portDHCP6Client, LocalHi: portDHCP6Client,
			PortLo: portDHCP6Server, PortHi: portDHCP6Server, Name: "exewall: system, DHCPv6 client"},
		{Layer: layerConnectV6, Action: actionPermit, Protos: icmp6, LocalLo: icmp6RouterSolic, LocalHi: icmp6RouterSolic,
			Name: "exewall: system, IPv6 router solicitation"},
		{Layer: layerConnectV6, Action: actionPermit, Protos: icmp6, LocalLo: icmp6NeighSolic, LocalHi: icmp6NeighAdv,
			Name: "exewall: system, IPv6 neighbour discovery"},
		{Layer: layerConnectV4, Action: actionPermit, User: dns, Protos: tcpUDP, PortLo: portDNS, PortHi: portDNS,
			Name: "exewall: system, DNS client service"},
		{Layer: layerConnectV6, Action: actionPermit, User: dns, Protos: tcpUDP, PortLo: portDNS, PortHi: portDNS,
			Name: "exewall: system, DNS client service"},
	}
}

// systemInFilters are systemFilters' inbound counterparts.
func systemInFilters() []filter {
	udp, icmp6 := []uint8{protoUDP}, []uint8{protoICMPv6}
	return []filter{
		{Layer: layerRecvV4, Action: actionPermit, Protos: udp, LocalLo: portDHCPClient, LocalHi: portDHCPClient,
			PortLo: portDHCPServer, PortHi: portDHCPServer, Name: "exewall: system, DHCP server answers"},
		{Layer: layerRecvV6, Action: actionPermit, Protos: udp, LocalLo: portDHCP6Client, LocalHi: portDHCP6Client,
			PortLo: portDHCP6Server, PortHi: portDHCP6Server, Name: "exewall: system, DHCPv6 server answers"},
		{Layer: layerRecvV6, Action: actionPermit, Protos: icmp6, LocalLo: icmp6RouterAdv, LocalHi: icmp6NeighAdv,
			Name: "exewall: system, IPv6 router and neighbour discovery"},
	}
}

// machine is what the translation needs to know about the machine.
type machine struct {
	// Nets are the host's own on-link subnets; `local-only` allows them.
	Nets []netip.Prefix
	// SelfExe is exewall's own executable. Its traffic is permitted above
	// every rule so that a `default: deny` never cuts the service off. (The
	// CLI reaches the service over a named pipe, which is not IP and never
	// passes through these layers.)
	SelfExe string
}

// translate turns a policy into the filters that enforce it, ordered from the
// highest weight down. It refuses what WFP cannot express (cgroup: rules,
// numeric uids and gids) with errors wrapping engine.ErrNotSupported, rather
// than enforce a weaker policy.
//
// Precedence follows engine.Evaluator: exewall's own executable, then exe
// rules, user rules, group rules (each in file order), then the default.
// Within a rule the destination entries come in engine.OrderedDests order and
// the rule's action closes the list, so every connection a rule covers ends
// at one of its filters and never falls through to a later rule or to the
// default. In audit (policy mode or the rule's audit: true) every would-be
// block becomes a permit marked Audit.
//
// The outbound filters come first, then the inbound ones (the receive/accept
// layers), built the same way with the peer as the remote address, entries'
// ports as local ports, entries limited to the other direction left out,
// and default_inbound as the default. Weights only compete within a layer.
func translate(p *engine.Policy, h machine) ([]filter, error) {
	if err := check(p); err != nil {
		return nil, err
	}
	var b builder
	nets := hostNets(h.Nets)
	for _, in := range []bool{false, true} {
		ls, sys, def := outLayers, systemFilters(), p.Default
		if in {
			ls, sys, def = inLayers, systemInFilters(), p.DefaultInbound
		}
		if h.SelfExe != "" {
			for _, l := range ls {
				b.add(filter{Layer: l, Action: actionPermit, Exe: h.SelfExe, Name: "exewall: own service"})
			}
		}
		for _, f := range sys {
			b.add(f)
		}
		for _, pick := range []func(*engine.Rule) bool{
			func(r *engine.Rule) bool { return r.Exe != "" },
			func(r *engine.Rule) bool { return r.User != "" },
			func(r *engine.Rule) bool { return r.Group != "" },
		} {
			for i := range p.Rules {
				if r := &p.Rules[i]; pick(r) {
					b.rule(r, ls, r.Audit || p.Mode == engine.ModeAudit, nets)
				}
			}
		}
		name := "exewall default"
		if in {
			name = "exewall default_inbound"
		}
		for _, l := range ls {
			b.action(filter{Layer: l, Name: name}, def, p.Mode == engine.ModeAudit, nets)
		}
	}
	n := uint64(len(b.fs))
	for i := range b.fs {
		b.fs[i].Weight = n - uint64(i)
	}
	return b.fs, nil
}

type builder struct{ fs []filter }

func (b *builder) add(f filter) { b.fs = append(b.fs, f) }

// block adds a block filter, or its audit stand-in.
func (b *builder) block(f filter, audit bool) {
	f.Action = actionBlock
	if audit {
		f.Action, f.Audit = actionPermit, true
	}
	b.add(f)
}

func (b *builder) rule(r *engine.Rule, ls []layer, audit bool, nets []netip.Prefix) {
	sel := filter{Exe: r.Exe, User: r.User, Group: r.Group, Rule: r.Name}
	for _, l := range ls {
		for _, d := range engine.OrderedDests(r) {
			if layerOf(d.Prefix, l.inbound()) != l || !d.Dir.Covers(l.dir()) {
				continue // an IPv4 entry never matches IPv6 and vice versa
			}
			protos, ok := protosFor(d.Dest, l)
			if !ok {
				continue
			}
			f := sel
			f.Layer, f.Remote, f.Protos = l, d.Prefix, protos
			if l.inbound() {
				f.LocalLo, f.LocalHi = d.PortLo, d.PortHi
			} else {
				f.PortLo, f.PortHi = d.PortLo, d.PortHi
			}
			f.Name = fmt.Sprintf("exewall %s: %s %s", r.Name, d.Verdict, d.Dest)
			if d.Verdict == engine.VerdictAllow {
				f.Action = actionPermit
				b.add(f)
			} else {
				b.block(f, audit)
			}
		}
		f := sel
		f.Layer, f.Name = l, "exewall "+r.Name
		b.action(f, r.Action, audit, nets)
	}
}

// action adds the filters that decide what no destination entry decided.
func (b *builder) action(sel filter, a engine.Action, audit bool, nets []netip.Prefix) {
	name := sel.Name
	in := sel.Layer.inbound()
	switch a {
	case engine.ActionAllow:
		sel.Action, sel.Name = actionPermit, name+": allow"
		b.add(sel)
	case engine.ActionDeny:
		sel.Name = name + ": deny"
		b.block(sel, audit)
	case engine.ActionLocalOnly:
		// Metadata services sit inside the link-local ranges but are never
		// local: block them above the local permits.
		for _, m := range engine.MetadataAddrs {
			if layerOf(m, in) == sel.Layer {
				f := sel
				f.Remote, f.Name = m, name+": local-only, metadata "+m.String()+" is not local"
				b.block(f, audit)
			}
		}
		for _, lr := range append(append([]netip.Prefix(nil), engine.LocalRanges...), nets...) {
			if layerOf(lr, in) == sel.Layer {
				f := sel
				f.Action, f.Remote, f.Name = actionPermit, lr, name+": local-only "+lr.String()
				b.add(f)
			}
		}
		sel.Name = name + ": local-only, not local"
		b.block(sel, audit)
	}
}

// protosFor maps an entry's protocol and ports to IP protocol numbers at a
// layer. ok is false for an entry that can never match: on Linux an ICMP
// attempt has port 0, which no port range contains.
func protosFor(d engine.Dest, l layer) (protos []uint8, ok bool) {
	switch d.Proto {
	case engine.ProtoTCP:
		return []uint8{protoTCP}, true
	case engine.ProtoUDP:
		return []uint8{protoUDP}, true
	case engine.ProtoICMP:
		if !d.AnyPort() {
			return nil, false
		}
		if l.v6() {
			return []uint8{protoICMPv6}, true
		}
		return []uint8{protoICMP}, true
	}
	if d.AnyPort() {
		return nil, true
	}
	// WFP's remote "port" of an ICMP flow is its code; keep a ported entry to
	// the protocols that have ports, as on Linux.
	return []uint8{protoTCP, protoUDP}, true
}

// hostNets keeps the on-link subnets that add something to LocalRanges, in a
// stable order. A /0 "subnet" is dropped: no real link is /0, and taking it
// at its word would make every address local.
func hostNets(in []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	seen := map[netip.Prefix]bool{}
next:
	for _, p := range in {
		if !p.IsValid() || p.Bits() == 0 || p.Addr().Is4In6() {
			continue
		}
		p = p.Masked()
		for _, lr := range engine.LocalRanges {
			if lr.Addr().Is4() == p.Addr().Is4() && lr.Bits() <= p.Bits() && lr.Contains(p.Addr()) {
				continue next
			}
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Addr().Compare(out[j].Addr()); c != 0 {
			return c < 0
		}
		return out[i].Bits() < out[j].Bits()
	})
	return out
}
