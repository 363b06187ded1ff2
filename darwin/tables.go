package darwin

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/exewall/exewall/engine"
)

// local returns the local table's reference, declaring it on first use.
func (g *generator) local() string {
	if !g.needLocal {
		g.needLocal = true
		g.tables = slices.Insert(g.tables, 0, tableLine(localTable, localEntries(g.hostNets)))
	}
	return "<" + localTable + ">"
}

// dest renders the destination of a run: one prefix inline, several in a
// table of their own.
func (g *generator) dest(rule, k int, ps []netip.Prefix) string {
	if len(ps) == 1 {
		return formatPrefix(ps[0])
	}
	name := fmt.Sprintf("exewall_r%d_%d", rule, k)
	es := make([]string, len(ps))
	for i, p := range ps {
		es[i] = formatPrefix(p)
	}
	g.tables = append(g.tables, tableLine(name, es))
	return "<" + name + ">"
}

func tableLine(name string, entries []string) string {
	return "table <" + name + "> const { " + strings.Join(entries, ", ") + " }"
}

// localEntries lists the local table: the engine's local ranges, the host's
// subnets not already inside them, then the metadata addresses negated. pf
// looks a table up by longest prefix, so a negated /32 inside 169.254.0.0/16
// keeps the metadata service out, as engine.IsLocal does.
func localEntries(hostNets []netip.Prefix) []string {
	var out []string
	for _, p := range engine.LocalRanges {
		out = append(out, formatPrefix(p))
	}
	var extra []netip.Prefix
	for _, p := range hostNets {
		p = normalize(p)
		if !p.IsValid() || covered(p, engine.LocalRanges) || slices.Contains(engine.MetadataAddrs, p) || slices.Contains(extra, p) {
			continue
		}
		extra = append(extra, p)
	}
	slices.SortFunc(extra, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	for _, p := range extra {
		out = append(out, formatPrefix(p))
	}
	for _, p := range engine.MetadataAddrs {
		out = append(out, "!"+formatPrefix(p))
	}
	return out
}

// normalize masks p and turns an IPv4-mapped prefix into IPv4.
func normalize(p netip.Prefix) netip.Prefix {
	if !p.IsValid() {
		return p
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

func covered(p netip.Prefix, by []netip.Prefix) bool {
	for _, b := range by {
		if b.Bits() <= p.Bits() && b.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// formatPrefix writes a host prefix as a bare address, as pfctl prints it.
func formatPrefix(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

func portSpec(lo, hi uint16) string {
	switch {
	case lo == 0 && hi == 0:
		return ""
	case lo == hi:
		return strconv.Itoa(int(lo))
	}
	return strconv.Itoa(int(lo)) + ":" + strconv.Itoa(int(hi))
}

func describe(rn run) string {
	s := make([]string, len(rn.prefixes))
	for i, p := range rn.prefixes {
		s[i] = engine.Dest{Prefix: p, PortLo: rn.lo, PortHi: rn.hi, Proto: rn.proto}.String()
	}
	return string(rn.verdict) + " " + strings.Join(s, ", ")
}
